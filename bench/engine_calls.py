"""The engine's own CPU per reducer call: one-event `append_sync_events` through `HostEngine.start_call`, no sockets.

`python -m bench.engine_calls [--calls 3000] [--rounds 5] [--batch 1]` runs the sync module in process with fsync off
and calls it as a WebSocket `CallReducer` does (BSATN arguments, one call in flight), so what it measures is the host's
fixed cost per call (with `--batch 100`, row a batched's per-event cost), as CPU microseconds of the event loop's
thread: argument handling, reducer dispatch, the reducer, the transaction and its log record, without the network,
the client or the disk. Compare code versions by alternating runs with the old tree on `PYTHONPATH` (see
`bench/percall.py`); on a shared machine only a ratio taken within one session means anything.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from autopilot_sync.host.call_outcome import CallOutcome, CallStatus
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.module import module
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime.values import ConnectionId, Identity
from bench.ours import ENGINE_ISSUER, event_input, trust_engine
from bench.stats import median
from bench.suite import payload

PRODUCER = Caller(
    Identity(7), ConnectionId(7), {"iss": ENGINE_ISSUER, "sub": "bench", "scopes": ["sync.append"], "streams": ["*"]}
)


def encoded_call(stream: str, seq: int, batch: int = 1) -> bytes:
    """The BSATN arguments of `append_sync_events` with `batch` events from `seq` on, as `CallReducer` carries them."""
    events = [event_input(stream, n, payload(n)) for n in range(seq, seq + batch)]
    return bsatn.encode(module.reducers["append_sync_events"].params, (events,))


async def one_round(engine: HostEngine, stream: str, calls: int, batch: int = 1) -> float:
    """Event-loop thread CPU microseconds per call over `calls` appends of `batch` events each, each awaited.

    CPU time of the loop's thread, not wall time: on a loaded machine wall time mostly measures the other processes.
    """
    # encoding is the client's cost: not timed
    args = [encoded_call(stream, 1 + n * batch, batch) for n in range(calls)]
    started = time.thread_time()
    for data in args:
        await committed(engine, data)
    return (time.thread_time() - started) / calls * 1e6


async def committed(engine: HostEngine, data: bytes) -> None:
    """One `append_sync_events` call with these BSATN arguments, as the producer's socket makes it, awaited;
    RuntimeError unless it committed."""
    done: asyncio.Future[CallOutcome] = asyncio.get_running_loop().create_future()
    engine.start_call("append_sync_events", data, PRODUCER, None, done.set_result)
    outcome = await done
    if outcome.status is not CallStatus.COMMITTED:
        raise RuntimeError(outcome.message)


async def run(calls: int, rounds: int, batch: int = 1) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="apsync-engine-calls-") as scratch:
        engine = HostEngine(module, Path(scratch), "bench", EngineConfig(fsync=False))
        await engine.start()
        await trust_engine(engine)
        try:
            return [await one_round(engine, f"ec-{n}", calls, batch) for n in range(rounds)]
        finally:
            await engine.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_calls", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1, help="events per call (the batched row uses 100)")
    args = parser.parse_args(argv)
    rates = asyncio.run(run(args.calls, args.rounds, args.batch))
    report = {"loop_cpu_us_per_call": median(rates), "rounds": rates, "load_average": os.getloadavg()}
    if args.batch > 1:
        report["loop_cpu_us_per_event"] = median(rates) / args.batch
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
