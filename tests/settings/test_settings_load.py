"""A service never starts on a missing or malformed variable: it exits 2 naming the variable and its form."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from autopilot_sync.settings.control import ControlSettings
from autopilot_sync.settings.desktop import DesktopSettings
from autopilot_sync.settings.fields import ListenAddress, parse_listen
from autopilot_sync.settings.host import HostSettings
from autopilot_sync.settings.load import load_settings
from autopilot_sync.settings.registry import SERVICES
from autopilot_sync.settings.runtime import RuntimeSettings

KEY = "ab" * 32


def _exit_lines(cls: type[HostSettings | ControlSettings], capsys: pytest.CaptureFixture[str]) -> list[str]:
    with pytest.raises(SystemExit) as stopped:
        load_settings(cls)
    assert stopped.value.code == 2
    return capsys.readouterr().err.splitlines()


@pytest.fixture
def control_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The control service's required variables, set to valid values."""
    monkeypatch.setenv("AUTOPILOT_SYNC_CONTROL_PUBLIC_URL", "https://control.example/")
    monkeypatch.setenv("AUTOPILOT_SYNC_CONTROL_SIGNING_KEY_PATH", "/etc/autopilot/signing.pem")
    return monkeypatch


def test_host_starts_with_quick_start_defaults() -> None:
    settings = load_settings(HostSettings)
    assert settings.listen == ListenAddress("127.0.0.1", 3000)
    assert settings.data_dir == Path("var/host")
    assert settings.database == "autopilot-sync"
    assert settings.module == "autopilot_sync.module"
    assert settings.trusted_issuers == ()
    assert settings.snapshot_every_commits == 10000
    assert settings.max_message_bytes == 33554432
    assert settings.fsync is True


def test_variables_override_defaults_and_lists_split_on_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOPILOT_SYNC_HOST_LISTEN", "0.0.0.0:0")
    monkeypatch.setenv("AUTOPILOT_SYNC_HOST_TRUSTED_ISSUERS", "https://a.example/, https://b.example")
    monkeypatch.setenv("AUTOPILOT_SYNC_HOST_FSYNC", "false")
    settings = load_settings(HostSettings)
    assert settings.listen == ListenAddress("0.0.0.0", 0)
    assert settings.trusted_issuers == ("https://a.example/", "https://b.example")
    assert settings.fsync is False


def test_control_defaults_and_normalised_values(control_env: pytest.MonkeyPatch) -> None:
    control_env.setenv("AUTOPILOT_SYNC_CONTROL_APPEND_ALLOWLIST", f"{KEY.upper()}, {KEY}")
    settings = load_settings(ControlSettings)
    assert settings.public_url == "https://control.example"
    assert settings.listen == ListenAddress("127.0.0.1", 3100)
    assert settings.append_allowlist == (KEY, KEY)
    assert (settings.token_ttl_min_seconds, settings.token_ttl_default_seconds, settings.token_ttl_max_seconds) == (
        60,
        300,
        900,
    )


def test_runtime_and_desktop_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOPILOT_SYNC_RUNTIME_NOSTR_KEY_PATH", "~/runtime.key")
    runtime = load_settings(RuntimeSettings)
    assert runtime.listen == ListenAddress("127.0.0.1", 3200)
    assert runtime.nostr_key_path == Path("~/runtime.key").expanduser()
    desktop = load_settings(DesktopSettings)
    assert desktop.control_url == "http://127.0.0.1:3100"
    assert desktop.streams == ()


def test_missing_required_variable_exits_2_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _exit_lines(ControlSettings, capsys)
    assert len(lines) == 2
    assert lines[0].startswith("AUTOPILOT_SYNC_CONTROL_PUBLIC_URL: missing; expected http(s) URL: ")
    assert lines[1].startswith("AUTOPILOT_SYNC_CONTROL_SIGNING_KEY_PATH: missing; expected filesystem path")


@pytest.mark.parametrize(
    ("variable", "value", "form"),
    [
        ("AUTOPILOT_SYNC_HOST_SNAPSHOT_EVERY_COMMITS", "ten", "expected integer >= 1"),
        ("AUTOPILOT_SYNC_HOST_MAX_MESSAGE_BYTES", "0", "expected integer >= 1"),
        ("AUTOPILOT_SYNC_HOST_LISTEN", "localhost", "expected host:port"),
        ("AUTOPILOT_SYNC_HOST_LISTEN", "127.0.0.1:70000", "expected host:port"),
        ("AUTOPILOT_SYNC_HOST_DATABASE", "Autopilot_Sync", "expected lowercase letters and digits in words"),
        ("AUTOPILOT_SYNC_HOST_DATABASE", "trailing-", "expected lowercase letters and digits in words"),
        ("AUTOPILOT_SYNC_HOST_MODULE", "autopilot-sync.module", "expected dotted Python import path"),
        ("AUTOPILOT_SYNC_HOST_TRUSTED_ISSUERS", "https://ok.example,not a url", "expected comma-separated http(s)"),
        ("AUTOPILOT_SYNC_HOST_FSYNC", "sometimes", "expected true or false"),
    ],
)
def test_malformed_host_variable_exits_2_naming_it_and_its_form(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str, form: str
) -> None:
    monkeypatch.setenv(variable, value)
    (line,) = _exit_lines(HostSettings, capsys)
    assert line.startswith(f"{variable}: invalid value ")
    assert form in line


@pytest.mark.parametrize(
    ("variable", "value", "form"),
    [
        ("AUTOPILOT_SYNC_CONTROL_PUBLIC_URL", "control.example", "expected http(s) URL"),
        ("AUTOPILOT_SYNC_CONTROL_SPACETIME_BASE_URL", "ws://host:3000", "expected http(s) URL"),
        ("AUTOPILOT_SYNC_CONTROL_APPEND_ALLOWLIST", "npub1xyz", "expected comma-separated 64-hex-character"),
        ("AUTOPILOT_SYNC_CONTROL_TOKEN_TTL_DEFAULT_SECONDS", "30", "between the minimum (60) and the maximum (900)"),
        ("AUTOPILOT_SYNC_CONTROL_TOKEN_TTL_MAX_SECONDS", "59", "must be >= the minimum (60)"),
    ],
)
def test_malformed_control_variable_exits_2_naming_it_and_its_form(
    control_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str, form: str
) -> None:
    control_env.setenv(variable, value)
    (line, *_) = _exit_lines(ControlSettings, capsys)
    assert line.startswith(f"{variable}: invalid value ")
    assert form in line


def test_misspelt_variable_is_refused_instead_of_silently_using_the_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUTOPILOT_SYNC_HOST_PORT", "4000")
    (line,) = _exit_lines(HostSettings, capsys)
    assert line.startswith("AUTOPILOT_SYNC_HOST_PORT: unknown variable for the host service; known: ")
    assert "AUTOPILOT_SYNC_HOST_LISTEN" in line


def test_every_problem_gets_its_own_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AUTOPILOT_SYNC_HOST_LISTEN", "nowhere")
    monkeypatch.setenv("AUTOPILOT_SYNC_HOST_DATABASE", "UPPER")
    lines = _exit_lines(HostSettings, capsys)
    assert [line.partition(":")[0] for line in lines] == ["AUTOPILOT_SYNC_HOST_LISTEN", "AUTOPILOT_SYNC_HOST_DATABASE"]


def test_service_process_exits_2_with_the_variable_on_stderr() -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("AUTOPILOT_SYNC_")}
    env["AUTOPILOT_SYNC_CONTROL_SIGNING_KEY_PATH"] = "/etc/key.pem"
    completed = subprocess.run(
        [str(Path(sys.executable).with_name("autopilot-sync")), "config", "check", "control"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.splitlines() == [
        "AUTOPILOT_SYNC_CONTROL_PUBLIC_URL: missing; expected http(s) URL: URL clients and hosts reach this "
        "service at; the issuer of every token it signs."
    ]


@pytest.mark.parametrize(
    ("text", "address"),
    [("127.0.0.1:3000", ListenAddress("127.0.0.1", 3000)), ("[::1]:0", ListenAddress("::1", 0))],
)
def test_listen_address_round_trips(text: str, address: ListenAddress) -> None:
    assert parse_listen(text) == address
    assert str(address) == text


@pytest.mark.parametrize("text", ["::1:3000", ":3000", "host:", "host:-1", "host:65536", "[::1]"])
def test_listen_address_rejects_ambiguous_or_out_of_range(text: str) -> None:
    with pytest.raises(ValueError, match="port"):
        parse_listen(text)


def test_every_setting_is_described_and_every_service_has_its_own_prefix() -> None:
    prefixes = [cls.env_prefix() for cls in SERVICES]
    assert len(set(prefixes)) == len(prefixes)
    assert [cls.service_name() for cls in SERVICES] == ["host", "control", "runtime", "desktop", "exporter", "ops"]
    for cls in SERVICES:
        assert cls.__doc__
        for name, field in cls.fields.items():
            assert field.description, f"{cls.__name__}.{name} has no description"
