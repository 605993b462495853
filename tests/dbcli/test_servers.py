"""The server list (`dbcli/servers.py`): pure file round trips, no network."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopilot_sync.dbcli import servers
from autopilot_sync.dbcli.servers import Server, ServerConfigError


def test_without_a_file_the_default_is_the_local_stack_of_dev_up(tmp_path: Path) -> None:
    found = servers.load(tmp_path / "cli.toml")
    chosen = servers.resolve(None, found)
    assert (chosen.name, chosen.url, chosen.control_url) == ("local", servers.LOCAL_URL, servers.LOCAL_CONTROL_URL)


def test_added_servers_and_the_default_survive_a_save_and_load(tmp_path: Path) -> None:
    path = tmp_path / "cli.toml"
    added = servers.load(path).with_server(
        Server("prod", "https://h.example", "https://c.example", "/k"), make_default=True
    )
    servers.save(added, path)
    again = servers.load(path)
    assert again == added
    assert servers.resolve(None, again).name == "prod"
    assert servers.resolve("local", again).url == servers.LOCAL_URL
    assert servers.resolve("https://h.example/", again).name == "prod"
    assert path.stat().st_mode & 0o077 == 0


def test_a_url_names_an_unconfigured_server_without_a_control_service() -> None:
    chosen = servers.resolve("http://10.1.2.3:3000/", servers.BUILT_IN)
    assert (chosen.url, chosen.control_url) == ("http://10.1.2.3:3000", None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("default_server = 3\n", "not a valid server list"), ("[[server]]\nname = 'x'\n", "needs a name and a url")],
)
def test_a_broken_file_is_one_line_saying_where(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "cli.toml"
    path.write_text(text)
    with pytest.raises(ServerConfigError, match=expected) as caught:
        servers.load(path)
    assert str(path) in str(caught.value)


def test_unknown_names_duplicate_names_and_bad_urls_are_refused_with_what_to_do() -> None:
    with pytest.raises(ServerConfigError, match="server add"):
        servers.resolve("nope", servers.BUILT_IN)
    with pytest.raises(ServerConfigError, match="exists already"):
        servers.BUILT_IN.with_server(Server("local", "http://x"), make_default=False)
    with pytest.raises(ServerConfigError, match="server list"):
        servers.BUILT_IN.with_default("nope")
    with pytest.raises(ServerConfigError, match="http:// or https://"):
        servers.check_url("ftp://x")
