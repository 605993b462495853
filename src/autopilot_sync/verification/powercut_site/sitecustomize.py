"""Run by Python at start-up when this folder is on `PYTHONPATH` (the verification stack puts it there for the host
child under the power-cut fault): installs `autopilot_sync.verification.powercut` when its directory variable is set,
and does nothing otherwise, so the variable, not the path, decides."""

import os

if os.environ.get("AUTOPILOT_SYNC_POWERCUT_DIR"):
    from autopilot_sync.verification.powercut import install_from_environment

    install_from_environment()
