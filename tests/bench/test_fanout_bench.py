"""Keep the fan-out isolation bench from rotting: a tiny run prints a row per scenario with measured latencies."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.fanout_bench import SCENARIOS, render, run


async def test_every_scenario_measures_the_readers() -> None:
    rows = await run(argparse.Namespace(seconds=0.5, rate=20.0, readers=2, no_fsync=True))
    assert [row[0] for row in rows] == list(SCENARIOS)
    for _, p50, p99, samples in rows:
        assert samples > 0 and 0 <= p50 <= p99
    table = render(rows)
    assert table.startswith("| scenario | readers' p50 ms |")
    assert "| quota, all match |" in table
