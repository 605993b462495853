"""Seeds for the chaos suite: `AUTOPILOT_CHAOS_SEED=<n>` replays a run; otherwise a fresh seed is drawn and printed."""

from __future__ import annotations

import os
import secrets

import pytest


@pytest.fixture
def seed() -> int:
    """The run's seed (printed, and in every failure message with the replay command)."""
    value = int(os.environ.get("AUTOPILOT_CHAOS_SEED") or secrets.randbelow(2**31))
    print(f"AUTOPILOT_CHAOS_SEED={value}")
    return value
