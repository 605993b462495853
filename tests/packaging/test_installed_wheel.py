"""An installed wheel's commands work where it is installed; repository tools say "run inside a checkout" (exit 2).

Packaging test: builds the wheel from this checkout and installs it into a fresh venv (tests/packaging/conftest.py);
every command runs from a directory outside any checkout, as a user who ran `pip install` would run it.
"""

from __future__ import annotations

import signal
import subprocess
from typing import Any

import pytest

pytestmark = pytest.mark.packaging


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["gate", "check"], "gate check"),
        (["compliance", "signoff"], "compliance signoff"),
        (["config", "docs", "--check"], "docs/configuration.md"),
        (["config", "docs"], "docs"),
        (["bench", "--quick"], "bench"),
    ],
)
def test_repository_tools_outside_a_checkout_say_so_in_one_line(
    installed_wheel: Any, args: list[str], names: str
) -> None:
    done = installed_wheel.run(*args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert (len(lines) == 1 and "run it inside a checkout" in lines[0]) or "run inside a checkout" in lines[0], lines
    assert names in lines[0]
    assert list(installed_wheel.outside.iterdir()) == [], "a refused tool must not leave files behind"


def test_installed_commands_work_outside_a_checkout(installed_wheel: Any) -> None:
    for args in (["--help"], ["host", "--help"], ["runtime", "demo", "--help"], ["config", "check", "--help"]):
        done = installed_wheel.run(*args)
        assert done.returncode == 0 and "Example:" in done.stdout, (args, done.stderr)
    written = installed_wheel.outside / "configuration.md"
    done = installed_wheel.run("config", "docs", "--output", str(written))
    assert done.returncode == 0 and "AUTOPILOT_SYNC_HOST_LISTEN" in written.read_text(), done.stderr
    written.unlink()


def test_installed_host_serves_until_sigterm(installed_wheel: Any) -> None:
    data = installed_wheel.outside.parent / "host-data"
    process = subprocess.Popen(
        [str(installed_wheel.command), "host", "--listen", "127.0.0.1:0", "--data-dir", str(data)],
        cwd=installed_wheel.outside,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("autopilot-sync host ready: http://127.0.0.1:"), first
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
