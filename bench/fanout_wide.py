"""Fan-out to many subscribers: the host's CPU per event when every event goes to `--subscribers` sockets.

`python -m bench.fanout_wide [--subscribers 1000] [--events 100] [--rate 20] [--profile /tmp/fan.txt]` starts our
host and control (as `python -m bench` does), opens `--subscribers` raw v2 subscribers of one stream (row (b)'s
load subscribers: `LightSubscriber`, the resume query through row-level security), publishes `--events` one-event
calls at `--rate` per second and waits until every subscriber holds every event; it prints the host process's CPU
per event (user + system, from /proc), the benchmark process's, and the seconds it took. Why: row (b) at 1,000
subscribers reports latency, which on a shared 2-core machine mostly says whether the host and the benchmark
process kept up; the host's CPU per event is what a change to the fan-out moves. With `--profile` py-spy records
the host while the events flow.

Compare code versions by running it alternately with the old tree first on `PYTHONPATH` (the host child inherits
it): `git archive HEAD~1 src | tar -x -C /tmp/old`, then `PYTHONPATH=/tmp/old/src:. python -m bench.fanout_wide`.
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

import aiohttp

from bench.ours import LightSubscriber, Ours, event_input, resume_query
from bench.percall import start_profiler
from bench.proc_cpu import process_cpu_seconds
from bench.suite import _more_files, payload

OPEN_CHUNK = 50
DRAIN_SECONDS = 120.0
POLL_SECONDS = 0.05


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="apsync-fanout-wide-") as scratch:
        ours = Ours(Path(scratch) / "ours")
        ours.start()
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        subscribers: list[LightSubscriber] = []
        try:
            stream = "wide-1"
            query = resume_query(stream, 0)
            producer = await ours.connect(producer=True)
            await ours.append(producer, [event_input(stream, 1, payload(1))])

            async def open_one() -> LightSubscriber:
                subscriber = LightSubscriber()
                await subscriber.open(ours, session, query)
                return subscriber

            for start in range(0, args.subscribers, OPEN_CHUNK):
                chunk = min(OPEN_CHUNK, args.subscribers - start)
                subscribers += await asyncio.gather(*(open_one() for _ in range(chunk)))
            await asyncio.sleep(1.0)  # every SubscribeApplied is out
            profiler = start_profiler(ours.host_pid, args.profile) if args.profile else None
            if profiler is not None:
                await asyncio.sleep(1.0)  # py-spy attaches
            host_cpu, own_cpu, started = process_cpu_seconds(ours.host_pid), time.process_time(), time.perf_counter()
            for seq in range(2, args.events + 2):
                await asyncio.sleep(max(0.0, started + (seq - 2) / args.rate - time.perf_counter()))
                await ours.append(producer, [event_input(stream, seq, payload(seq))])
            frames = args.events + 1  # SubscribeApplied, then one TransactionUpdate per event
            for _ in range(int(DRAIN_SECONDS / POLL_SECONDS)):  # the frames are counted, not signalled
                if min(s.frames for s in subscribers) >= frames:
                    break
                await asyncio.sleep(POLL_SECONDS)
            seconds = time.perf_counter() - started
            host = (process_cpu_seconds(ours.host_pid) - host_cpu) / args.events * 1000
            own = (time.process_time() - own_cpu) / args.events * 1000
            if profiler is not None:
                profiler.send_signal(2)
                profiler.wait(60)
            await producer.close()
            return {
                "subscribers": args.subscribers,
                "events": args.events,
                "seconds": seconds,
                "host_cpu_ms_per_event": host,
                "bench_cpu_ms_per_event": own,
                "all_delivered": min(s.frames for s in subscribers) >= frames,
                "load_average": os.getloadavg(),
            }
        finally:
            for subscriber in subscribers:
                await subscriber.close()
            await session.close()
            ours.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout_wide", description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--rate", type=float, default=20.0, help="one-event calls per second (row b's rate)")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy output while the events flow")
    with _more_files():
        print(json.dumps(asyncio.run(run(parser.parse_args(argv)))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
