"""The desktop stops promptly on SIGTERM and SIGINT in every state, not only once it is live.

Seen by a newcomer: with control unreachable, `timeout 8 autopilot-sync desktop --headless` ran for ten minutes and
only SIGKILL ended it, because the stop signal was only looked at once the first subscription was live.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autopilot_sync.desktop.state_lines import parse_state_line
from autopilot_sync.devtools.processes import free_port


def _start_desktop(config_dir: Path, control_url: str, host_url: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "AUTOPILOT_SYNC_DESKTOP_CONFIG_DIR": str(config_dir),
        "AUTOPILOT_SYNC_DESKTOP_CONTROL_URL": control_url,
        "AUTOPILOT_SYNC_DESKTOP_SPACETIME_BASE_URL": host_url,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "autopilot_sync", "desktop", "--headless"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def _wait_for_phase(process: subprocess.Popen[str], phases: set[str], timeout: float = 60.0) -> dict[str, object]:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    for line in process.stdout:
        state = parse_state_line(line)
        if state is not None and state["connection"]["phase"] in phases:
            return state
        assert time.monotonic() < deadline, f"no state in {phases} within {timeout} s"
    raise AssertionError(f"desktop exited before reaching {phases}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_desktop_stops_on_signal_while_control_is_unreachable(tmp_path: Path, signum: int) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    process = _start_desktop(tmp_path / "desktop", nowhere, nowhere)
    try:
        state = _wait_for_phase(process, {"backing_off"})
        reason = str(state["connection"]["reason"])  # type: ignore[index]
        assert f"control unreachable at {nowhere}" in reason, reason
        assert "ConnectionKey" not in reason and "Error(" not in reason, reason
        process.send_signal(signum)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
