"""The event loop's CPU for snapshot captures under fan-in: `SnapshotScheduler.after_commit`, per capture and share.

`python -m bench.snapshot_capture [--streams 1000] [--calls 3000] [--old /tmp/old/src] [--rounds 3]` runs the sync
module in process (`HostEngine`, fsync off, the default snapshot settings: an incremental snapshot every 4 MiB of
log) and calls `append_sync_events` as row h's coalesced producer does at full size: each call 3 events of each of
10 streams, the streams taken in turn from `--streams`, so every partition of `sync_event` grows between two
snapshots. It reports the loop thread's CPU inside `after_commit` (the capture: the generic tables' rows copied, the
log table's partitions copied by `LogRows.segments`) per capture and as a share of the loop's CPU over the run.

With `--old`, every round runs one worker process per tree (this tree and the old one on `PYTHONPATH`, `bench.ab`),
the order flipped every round, and the medians are printed per tree (docs/performance.md "Round 8 — tidy3").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.ab import REPO, report_old_against_new, run_worker, with_pythonpath

EVENTS_PER_STREAM = 3
STREAMS_PER_CALL = 10


async def measure(streams: int, calls: int) -> dict[str, float]:
    """Loop CPU in `after_commit` per capture and as a share of the run (module docstring)."""
    from autopilot_sync.host.engine import EngineConfig, HostEngine
    from autopilot_sync.host.snapshot_scheduler import SnapshotScheduler
    from autopilot_sync.module import module
    from autopilot_sync.spacetime import bsatn
    from bench.engine_calls import committed
    from bench.ours import event_input, trust_engine
    from bench.suite import payload

    params = module.reducers["append_sync_events"].params
    next_seq = dict.fromkeys(range(streams), 1)
    encoded = []
    for n in range(calls):
        first = n * STREAMS_PER_CALL % streams
        events = []
        for s in range(first, first + STREAMS_PER_CALL):
            stream = s % streams
            seq = next_seq[stream]
            events += [event_input(f"fan-{stream}", q, payload(q)) for q in range(seq, seq + EVENTS_PER_STREAM)]
            next_seq[stream] = seq + EVENTS_PER_STREAM
        encoded.append(bsatn.encode(params, (events,)))

    spent = [0.0]
    captures = [0]
    original = SnapshotScheduler.after_commit

    def timed(self: SnapshotScheduler, *args: Any, **kwargs: Any) -> None:
        before, started = self.last_offset, time.thread_time()
        original(self, *args, **kwargs)
        spent[0] += time.thread_time() - started
        captures[0] += self.last_offset != before

    SnapshotScheduler.after_commit = timed  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory(prefix="apsync-capture-") as scratch:
        engine = HostEngine(module, Path(scratch), "bench", EngineConfig(fsync=False))
        await engine.start()
        await trust_engine(engine)
        started = time.thread_time()
        for data in encoded:
            await committed(engine, data)
        total = time.thread_time() - started
        await engine.stop()
    return {
        "captures": captures[0],
        "capture_loop_ms_each": spent[0] / max(captures[0], 1) * 1e3,
        "after_commit_share_pct": spent[0] / total * 100,
        "loop_cpu_us_per_event": total / (calls * STREAMS_PER_CALL * EVENTS_PER_STREAM) * 1e6,
    }


def _worker(src: str | None, streams: int, calls: int) -> dict[str, float]:
    env = with_pythonpath({**os.environ, "PYTHONPATH": str(REPO)}, src)
    argv = ["-m", "bench.snapshot_capture", "--streams", str(streams), "--calls", str(calls), "--worker"]
    return run_worker(argv, env, f"worker on {src or 'this tree'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.snapshot_capture", description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--old", type=Path, default=None, help="the old tree's src folder: alternate with it")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker or args.old is None:
        print(json.dumps(asyncio.run(measure(args.streams, args.calls))))
        return 0
    report_old_against_new(str(args.old), args.rounds, lambda src: _worker(src, args.streams, args.calls))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
