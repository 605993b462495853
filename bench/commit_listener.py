"""The subscription engine's CPU per commit: `SubscriptionManager.on_commit` for one reader of a stream.

`python -m bench.commit_listener [--calls 2000] [--readers 1] [--subscribers 1] [--profile]` runs the sync module
in process with fsync off, grants `--readers` identities the stream, subscribes the first one with the resume query
(which row-level security turns into a join with `stream_reader`; `--subscribers` clients of it hold that query),
appends `--calls` one-event calls, and times each `on_commit` with the event loop thread's CPU clock; `--profile`
prints a cProfile of it instead (cProfile inflates small calls: use it for shares, the plain run for numbers). Why
its own script: the receipt phase of `bench.percall` spends most of its host time elsewhere (frames, the reducer,
the socket), so a change to the join evaluation is judged here; compare code versions alternating, with the old
tree on `PYTHONPATH` (see `bench/percall.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

from autopilot_sync.host.call_outcome import CallOutcome, CallStatus
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.host.subscriptions import SubscriptionManager
from autopilot_sync.host.transaction import CommittedTx
from autopilot_sync.module import module
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime.messages import SubscribeApplied
from autopilot_sync.spacetime.values import ConnectionId, Identity
from bench.ours import ENGINE_ISSUER, event_input, resume_query, trust_engine
from bench.stats import median
from bench.suite import payload

PRODUCER = Caller(
    Identity(7), ConnectionId(7), {"iss": ENGINE_ISSUER, "sub": "bench", "scopes": ["sync.append"], "streams": ["*"]}
)
READER = Identity(9)


async def _call(engine: HostEngine, name: str, args: tuple[Any, ...]) -> None:
    done: asyncio.Future[CallOutcome] = asyncio.get_running_loop().create_future()
    engine.start_call(name, bsatn.encode(module.reducers[name].params, args), PRODUCER, None, done.set_result)
    outcome = await done
    if outcome.status is not CallStatus.COMMITTED:
        raise RuntimeError(outcome.message)


async def run(calls: int, readers: int, profiler: cProfile.Profile | None, subscribers: int = 1) -> list[float]:
    """CPU microseconds of each `on_commit` over `calls` appends; every one must reach the subscriber (with
    `subscribers` > 1, that many clients of the first reader hold the same resume query: the fan-out's share)."""
    with tempfile.TemporaryDirectory(prefix="apsync-commit-listener-") as scratch:
        engine = HostEngine(module, Path(scratch), "bench", EngineConfig(fsync=False))
        await engine.start()
        await trust_engine(engine)
        try:
            manager = SubscriptionManager(engine.datastore, lambda: engine.offset, lambda: engine.durable_offset)
            times: list[float] = []
            reached = 0

            def listener(tx: CommittedTx) -> None:
                nonlocal reached
                started = time.thread_time()
                if profiler is not None:
                    profiler.enable()
                out = manager.on_commit(tx)
                if profiler is not None:
                    profiler.disable()
                times.append((time.thread_time() - started) * 1e6)
                reached += bool(out)

            engine.add_commit_listener(listener)
            granted = [READER] + [Identity(100 + n) for n in range(readers - 1)]
            await _call(engine, "grant_stream_readers", ("cl-1", granted))
            for n in range(subscribers):
                client = "reader" if n == 0 else f"reader-{n}"
                applied = manager.subscribe(client, 1, 1, [resume_query("cl-1", 0)], sender=READER)
                if not isinstance(applied, SubscribeApplied):
                    raise RuntimeError(str(applied))
            times.clear()
            reached = 0
            for seq in range(1, calls + 1):
                await _call(engine, "append_sync_events", ([event_input("cl-1", seq, payload(seq))],))
            if reached != calls:
                raise RuntimeError(f"{reached} of {calls} appends reached the subscriber")
            return times
        finally:
            await engine.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.commit_listener", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--readers", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--subscribers", type=int, default=1, help="clients holding the first reader's query")
    args = parser.parse_args(argv)
    profiler = cProfile.Profile() if args.profile else None
    times = asyncio.run(run(args.calls, args.readers, profiler, args.subscribers))
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
        return 0
    print(json.dumps({"on_commit_cpu_us_p50": median(times), "load_average": os.getloadavg()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
