"""`autopilot-sync control token`: a failure is one line and exit 1, never a traceback (success: the TypeScript app
test, tests/conformance/test_typescript_app.py, gets its token this way from a real control process)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from autopilot_sync.cli import main
from autopilot_sync.devtools.processes import free_port
from autopilot_sync.nostr.keyfile import save_secret_key
from autopilot_sync.nostr.keys import SecretKey


def test_an_unreachable_control_is_one_line_and_exit_1(tmp_path: Path) -> None:
    key = save_secret_key(tmp_path / "nostr.key", SecretKey.generate())
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(main, ["control", "token", "--url", url, "--key-file", str(key)])
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"Error: unavailable: control unreachable at {url}: ")


def test_a_key_file_others_can_read_is_refused_before_any_request(tmp_path: Path) -> None:
    key = save_secret_key(tmp_path / "nostr.key", SecretKey.generate())
    key.chmod(0o644)
    result = CliRunner().invoke(main, ["control", "token", "--url", "http://127.0.0.1:9", "--key-file", str(key)])
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1 and "group or others can access it" in result.output
