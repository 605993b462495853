"""Batched publish, engine path and producer, old tree against new in fine-grained alternation: CPU µs per event.

`python -m bench.engine_pair_ab --old /tmp/old/src [--sessions 3] [--pairs 20] [--calls 10] [--batch 100]` starts
two long-lived worker processes per session, one importing the old tree and one this tree (each with its own
in-process `HostEngine`, fsync off, no sockets, as `bench.engine_calls`), and alternates them round by round
(order flipped every round, never both at once). A round builds `--calls` batches of `--batch` events as row a's
producer does (`bench.ours.event_input` and the argument encode: the producer's CPU) and runs them through
`HostEngine.start_call` one at a time (the event loop thread's CPU). It prints, per session, the medians of each
side and the median of the pairwise new/old ratios, then the median of the sessions' ratios.

Why: on the shared machine a ~0.1 s round alternated 20 times per session resolves a ~2-3% change where whole runs
minutes apart (`bench.engine_calls` run in turn) drift by ±10%; a fresh pair of processes per session shows the
bias one pair of processes can carry (the producer, unchanged by an engine-only change, is the control). Make the
old tree with `git archive <commit> src | tar -x -C /tmp/old`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

from bench.ab import worker_rounds

WORKER = r"""
import asyncio, json, sys, tempfile, time
from pathlib import Path
from autopilot_sync.host.call_outcome import CallStatus
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.module import module
from autopilot_sync.spacetime import bsatn
from bench.engine_calls import PRODUCER
from bench.ours import event_input, trust_engine
from bench.suite import payload

CALLS, BATCH = int(sys.argv[1]), int(sys.argv[2])
codec = bsatn.codec(module.reducers["append_sync_events"].params)


async def main():
    with tempfile.TemporaryDirectory(prefix="apsync-pair-ab-") as scratch:
        engine = HostEngine(module, Path(scratch), "bench", EngineConfig(fsync=False))
        await engine.start()
        await trust_engine(engine)
        loop = asyncio.get_running_loop()
        rounds = 0
        while await loop.run_in_executor(None, sys.stdin.readline):
            rounds += 1
            started = time.thread_time()
            calls = []
            for n in range(CALLS):
                first = 1 + n * BATCH
                events = [event_input(f"ab-{rounds}", s, payload(s)) for s in range(first, first + BATCH)]
                calls.append(codec.encode((events,)))
            producer = time.thread_time() - started
            started = time.thread_time()
            for data in calls:
                done = loop.create_future()
                engine.start_call("append_sync_events", data, PRODUCER, None, done.set_result)
                outcome = await done
                if outcome.status is not CallStatus.COMMITTED:
                    raise RuntimeError(outcome.message)
            engine_cpu = time.thread_time() - started
            print(json.dumps([engine_cpu / (CALLS * BATCH) * 1e6, producer / (CALLS * BATCH) * 1e6]), flush=True)
        await engine.stop()


asyncio.run(main())
"""


def session(old: str, new: str, args: argparse.Namespace) -> dict[str, float]:
    """One pair of workers, `args.pairs` alternations after two warm-up pairs: medians and pairwise ratios."""
    trees = {"old": old, "new": new}
    rows = worker_rounds(trees, WORKER, [str(args.calls), str(args.batch)], args.pairs, warmup=2)
    pairs = list(zip(rows["old"], rows["new"], strict=True))
    return {
        "engine_old": statistics.median(r[0] for r in rows["old"]),
        "engine_new": statistics.median(r[0] for r in rows["new"]),
        "engine_ratio": statistics.median(n[0] / o[0] for o, n in pairs),
        "producer_old": statistics.median(r[1] for r in rows["old"]),
        "producer_new": statistics.median(r[1] for r in rows["new"]),
        "producer_ratio": statistics.median(n[1] / o[1] for o, n in pairs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_pair_ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, required=True, help="the old tree's src folder")
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=20, help="alternations per session")
    parser.add_argument("--calls", type=int, default=10, help="calls per round")
    parser.add_argument("--batch", type=int, default=100, help="events per call")
    args = parser.parse_args(argv)
    new = str(Path(__file__).resolve().parent.parent / "src")
    sessions = [session(str(args.old), new, args) for _ in range(args.sessions)]
    for n, result in enumerate(sessions):
        print(json.dumps({"session": n} | {key: round(value, 3) for key, value in result.items()}))
    summary = {
        "engine_ratio": statistics.median(s["engine_ratio"] for s in sessions),
        "producer_ratio": statistics.median(s["producer_ratio"] for s in sessions),
        "load_average": os.getloadavg(),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
