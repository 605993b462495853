"""`autopilot-sync host` read without click (`launch.py`) behaves as the click command: same options, same texts.

The fast path takes only a well-formed list of the host's own options; everything else goes to click, so help and
usage errors come from one source. The failures the fast path itself reports (a module that does not load, a busy
port) must read exactly as the click group's, byte for byte: each case runs the real command both ways.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from autopilot_sync.launch import HOST_OPTIONS, host_arguments

#: The click CLI run directly (not through `launch.main`), under the same program name as `python -m autopilot_sync`.
CLICK_ONLY = "import sys; from autopilot_sync.cli import main; main(prog_name='python -m autopilot_sync')"


def test_the_fast_path_reads_the_host_options_as_click_does() -> None:
    args = ["--listen", "127.0.0.1:0", "--data-dir=/tmp/x", "--module", "", "--log-level", "debug", "--listen=a:1"]
    assert host_arguments(args) == {"listen": "a:1", "data_dir": "/tmp/x", "module_path": "", "log_level": "debug"}
    assert host_arguments([]) == {}


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["-h"],
        ["--listen"],  # a missing value
        ["--listen", "--data-dir", "x"],  # click decides whether `--data-dir` is a value
        ["--no-such-option", "x"],
        ["extra"],
        ["--", "--listen", "x"],
        ["--lis", "x"],  # no abbreviations: click suggests the full name
    ],
)
def test_anything_but_well_formed_host_options_is_left_to_click(args: list[str]) -> None:
    assert host_arguments(args) is None


def test_the_host_options_are_the_click_commands() -> None:
    from autopilot_sync.host.cli import host

    declared = {opt: param.name for param in host.params for opt in param.opts}
    assert {name: declared[name] for name in HOST_OPTIONS} == HOST_OPTIONS
    assert set(declared) - {"--help"} == set(HOST_OPTIONS)


def _both_ways(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], ...]:
    """`args` run as `python -m autopilot_sync` (the fast path) and through the click group alone."""
    full_env = {**os.environ, **env}
    runs = []
    for command in ([sys.executable, "-m", "autopilot_sync"], [sys.executable, "-c", CLICK_ONLY]):
        done = subprocess.run(
            [*command, *args], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, env=full_env
        )
        runs.append(done)
    return tuple(runs)


def test_a_module_that_does_not_load_fails_the_fast_path_with_the_click_commands_text(tmp_path: Path) -> None:
    fast, click_run = _both_ways(["host", "--module", "no.such.module", "--data-dir", str(tmp_path / "a")], {})
    assert fast.returncode == click_run.returncode == 1
    assert "cannot import module 'no.such.module'" in fast.stderr
    assert fast.stderr.splitlines()[-1] == click_run.stderr.splitlines()[-1]
    assert fast.stderr.splitlines()[-1].startswith("Error: ")


def test_a_busy_port_fails_the_fast_path_with_the_click_groups_one_line(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        args = ["host", "--listen", f"127.0.0.1:{port}"]
        fast, click_run = _both_ways(args, {"AUTOPILOT_SYNC_HOST_DATA_DIR": str(tmp_path / "b")})
    assert fast.returncode == click_run.returncode == 1
    assert (
        fast.stderr
        == click_run.stderr
        == (f"Error: 127.0.0.1:{port} is already in use: choose another with --listen or AUTOPILOT_SYNC_HOST_LISTEN\n")
    )


def test_host_help_and_usage_errors_come_from_click() -> None:
    helped = subprocess.run(
        [sys.executable, "-m", "autopilot_sync", "host", "--help"], capture_output=True, text=True, timeout=120
    )
    assert helped.returncode == 0
    assert helped.stdout.startswith("Usage: python -m autopilot_sync host [OPTIONS]")
    assert "--log-level TEXT" in helped.stdout
    wrong = subprocess.run(
        [sys.executable, "-m", "autopilot_sync", "host", "--listen"], capture_output=True, text=True, timeout=120
    )
    assert wrong.returncode == 2
    assert wrong.stderr.endswith("Error: Option '--listen' requires an argument.\n")
