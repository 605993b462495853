"""`bench.fanout_wide` counts CPU only once every subscriber holds every event (it never times anything here)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.fanout_wide import run


async def test_fanout_wide_reports_only_after_every_subscriber_received_every_event() -> None:
    found = await run(argparse.Namespace(subscribers=3, events=4, rate=50.0, profile=None))
    assert found["all_delivered"] is True
    assert found["subscribers"] == 3 and found["events"] == 4
