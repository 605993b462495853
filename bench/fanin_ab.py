"""Row h's coalesced producer under two coalescing policies, interleaved: commit latency, events per call, CPU.

`python -m bench.fanin_ab [--streams 100] [--connections 10] [--seconds 5] [--rounds 6]` runs row h's "coalesced as
the runtime" producer (`bench.workloads.fanin`) once per variant and round, each run on a fresh host and control,
the order flipped every round (`bench.ab.interleaved`), and prints the medians per variant: achieved events/s,
commit p50/p99, events per call, the host's CPU per event (`/proc`) and the producers' CPU per event. The variants:

- "two in flight": the coalescer of session 8 (two calls in flight on each link whatever the host's answer time);
- "runtime default": `CoalesceLimits()` as the runtime runs it (one call in flight while the host is behind, unless
  a full call waits).

Why: the policy only changes what happens once the host is behind, and on the shared 2-core machine whether it is
behind at a size depends on the other processes; a fresh host per run keeps one run's store and snapshots from
weighing on the next, and the interleaving lets the two variants see the same load.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from autopilot_sync.runtime.coalesce import CoalesceLimits
from bench.ab import Samples, interleaved, table
from bench.ours import Ours
from bench.suite import Context, Sizes
from bench.workloads import fanin

VARIANTS = {
    "two in flight": CoalesceLimits(behind_after=float("inf")),
    "runtime default": CoalesceLimits(),
}


async def one_run(root: Path, sizes: Sizes, limits: CoalesceLimits) -> dict[str, float]:
    """Row h's coalesced producer once on a fresh host: its metrics, named without the row's label."""
    ours = Ours(root / "ours")
    ours.start()
    try:
        warm = await ours.connect(producer=True)  # imports, schema, first token: not measured
        await warm.close()
        found = await fanin._measure(Context(root, sizes, ours), fanin.COALESCED, limits)
    finally:
        ours.stop()
    return {key.split(": ", 1)[1]: value for key, value in found.items()}


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanin_ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args(argv)
    sizes = Sizes(fanin_streams=args.streams, fanin_connections=args.connections, fanin_seconds=args.seconds)
    samples = Samples()
    for round_no, name in interleaved(list(VARIANTS), args.rounds):
        with tempfile.TemporaryDirectory(prefix="apsync-fanin-ab-") as scratch:
            row = await one_run(Path(scratch), sizes, VARIANTS[name])
        print(f"round {round_no} {name}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items()), file=sys.stderr)
        samples.add(name, row)
    print(table(samples.medians()))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
