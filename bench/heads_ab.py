"""Fan-in calls in process, old tree against new: the engine's CPU per event for calls of N events over S streams.

`python -m bench.heads_ab [--old /tmp/old/src] [--sessions 3] [--pairs 10] [--calls 100] [--events 20]
[--spread 1,20] [--streams 1000]` starts, per session, one long-lived worker process per tree (each with its own
in-process `HostEngine`, fsync off, no sockets, as `bench.engine_calls`; without `--old`, only this tree's) and
alternates them round by round, the order flipped every round. In a round a worker runs, for every S of `--spread`,
`--calls` calls of `--events` events each spread evenly over S streams taken in turn from a pool of `--streams`
streams whose heads all exist (as row h's coalescer sends them: ~20 events from ~20 of 1,000 streams), through
`HostEngine.start_call` one at a time, and reports the event loop thread's CPU per event for each S. It prints per
session the medians per side and S, and (with `--old`) the median of the pairwise new/old ratios.

Why: row h's host cost per event grows with the streams a call spans (session 9: 60.8 µs per event from one
stream, 99.7 µs from 20): what a stream costs once per call (its head's read and write-back) is what this isolates;
S = 1 is the control (the same events, one head per call). Fine-grained alternation in one run, as
`bench.engine_pair_ab`, because on the shared machine runs minutes apart drift by ±10%. Make the old tree with
`git archive <commit> src | tar -x -C /tmp/old` (or `bench.ab.export_tree`).
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

CALLS, EVENTS, STREAMS = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
SPREAD = [int(s) for s in sys.argv[4].split(",")]
codec = bsatn.codec(module.reducers["append_sync_events"].params)
heads = [0] * STREAMS
cursor = 0


def calls_over(spread, count):
    # `count` calls of EVENTS events, each spread evenly over `spread` streams taken in turn from the pool
    global cursor
    out = []
    for _ in range(count):
        group = [(cursor + i) % STREAMS for i in range(spread)]
        cursor = (cursor + spread) % STREAMS
        events = []
        for n in range(EVENTS):
            stream = group[n % spread]
            heads[stream] += 1
            events.append(event_input(f"fan-{stream}", heads[stream], payload(heads[stream])))
        events.sort(key=lambda e: (e.stream_id, e.expected_seq))
        out.append(codec.encode((events,)))
    return out


async def run(engine, calls):
    loop = asyncio.get_running_loop()
    started = time.thread_time()
    for data in calls:
        done = loop.create_future()
        engine.start_call("append_sync_events", data, PRODUCER, None, done.set_result)
        outcome = await done
        if outcome.status is not CallStatus.COMMITTED:
            raise RuntimeError(outcome.message)
    return (time.thread_time() - started) / (len(calls) * EVENTS) * 1e6


async def main():
    with tempfile.TemporaryDirectory(prefix="apsync-heads-ab-") as scratch:
        engine = HostEngine(module, Path(scratch), "bench", EngineConfig(fsync=False))
        await engine.start()
        await trust_engine(engine)
        await run(engine, calls_over(min(STREAMS, EVENTS), 2 * STREAMS // min(STREAMS, EVENTS)))  # every head
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, sys.stdin.readline):
            row = {}
            for spread in SPREAD:
                row[str(spread)] = await run(engine, calls_over(spread, CALLS))
            print(json.dumps(row), flush=True)
        await engine.stop()


asyncio.run(main())
"""


def session(trees: dict[str, str], args: argparse.Namespace) -> dict[str, float]:
    """One worker per tree, `args.pairs` alternations after one warm-up: medians per side and S, pairwise ratios."""
    argv = [str(args.calls), str(args.events), str(args.streams), args.spread]
    answers = worker_rounds(trees, WORKER, argv, args.pairs, warmup=1)
    rows = {name: [{key: float(value) for key, value in row.items()} for row in got] for name, got in answers.items()}
    names = list(trees)
    out: dict[str, float] = {}
    for spread in args.spread.split(","):
        for name in names:
            out[f"{name} S={spread} us/event"] = statistics.median(r[spread] for r in rows[name])
        if "old" in rows:
            pairs = zip(rows["old"], rows["new"], strict=True)
            out[f"new/old S={spread}"] = statistics.median(n[spread] / o[spread] for o, n in pairs)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.heads_ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, help="the old tree's src folder (without it: this tree alone)")
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=10, help="alternations per session")
    parser.add_argument("--calls", type=int, default=100, help="calls per S and round")
    parser.add_argument("--events", type=int, default=20, help="events per call")
    parser.add_argument("--spread", default="1,20", help="streams per call, comma-separated")
    parser.add_argument("--streams", type=int, default=1000, help="streams in the pool (every head exists)")
    args = parser.parse_args(argv)
    new = str(Path(__file__).resolve().parent.parent / "src")
    trees = {"old": str(args.old), "new": new} if args.old else {"new": new}
    sessions = [session(trees, args) for _ in range(args.sessions)]
    for n, result in enumerate(sessions):
        print(json.dumps({"session": n} | {key: round(value, 3) for key, value in result.items()}))
    summary = {key: round(statistics.median(s[key] for s in sessions), 3) for key in sessions[0]}
    print(json.dumps({"median of sessions": summary, "load_average": os.getloadavg()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
