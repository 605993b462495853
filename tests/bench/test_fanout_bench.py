"""Keep the fan-out isolation bench from rotting: a tiny run prints a row per scenario with measured latencies."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.fanout_bench import SCENARIOS, render, run


async def test_every_scenario_measures_the_readers() -> None:
    rows = await run(argparse.Namespace(seconds=0.5, rate=20.0, readers=2, rounds=2, query_sets=8, no_fsync=True))
    assert [row[0] for row in rows] == list(SCENARIOS)
    for _, p50, p99, ratios, samples in rows:
        assert samples > 0 and 0 <= p50 <= p99
        assert len(ratios) == 2  # one p99 ratio per interleaved round; the table shows their median
    table = render(rows)
    assert table.startswith("| scenario | readers' p50 ms |") and "p99 / alone (median)" in table
    assert "| quota, all match |" in table
