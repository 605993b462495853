"""Helpers for the `autopilot-sync build` tests: where the chat project is, and the CLI run as a real process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHAT = ROOT / "modules" / "chat"


def run_build(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`autopilot-sync build ARGS…` as a real process, the way a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "autopilot_sync", "build", *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
