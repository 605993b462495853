"""The quick start's run command brings the whole system up: presence and live runtime events reach the desktop."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from autopilot_sync.desktop.state_lines import read_states
from autopilot_sync.devtools.processes import free_port


def test_up_shows_live_presence_and_runtime_events(tmp_path: Path) -> None:
    _up_delivers_presence_and_events_in_order(tmp_path, [])


@pytest.mark.node
def test_up_runs_the_whole_system_on_the_typescript_twin(tmp_path: Path, typescript_sync_module: Path) -> None:
    """Issue 18 item 3: the same runtime, desktop and control, the host serving the TypeScript build of the module."""
    _up_delivers_presence_and_events_in_order(tmp_path, ["--module", str(typescript_sync_module)])


def _up_delivers_presence_and_events_in_order(tmp_path: Path, extra: list[str]) -> None:
    ports = [str(free_port()) for _ in range(4)]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "autopilot_sync",
            "up",
            "--headless",
            "--duration",
            "30",  # from the desktop's start: on a loaded machine its imports alone can take 15 s
            "--rate",
            "20",
            "--state-dir",
            str(tmp_path),
            "--host-port",
            ports[0],
            "--control-port",
            ports[1],
            "--runtime-port",
            ports[2],
            "--exporter-port",
            ports[3],
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    states = read_states(done.stdout.splitlines())
    live = [s for s in states if s["connection"]["phase"] == "live"]
    assert live, done.stderr[-3000:]
    # The runtime (producer key) and the desktop itself are both present, as two Nostr identities.
    assert max(s["presence"]["users"] for s in live) >= 2
    assert any(s["presence"]["self_connections"] == 1 for s in live)
    final_streams = states[-1]["streams"]
    assert final_streams, "no runtime stream reached the desktop"
    assert sum(stream["applied"] for stream in final_streams) >= 20
    for stream in final_streams:
        assert stream["gaps"] == 0 and stream["duplicates"] == 0
        assert stream["applied"] <= stream["head"]
