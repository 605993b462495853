"""Old against new SDK per-call cost in one run: one host, client processes alternating between two source trees.

`python -m bench.sdkcall_ab --old /tmp/old/src [--new src] [--rounds 6] [--calls 1000] [--loop asyncio|uvloop]`
starts our host and control once (this tree), then per round runs one client process per tree (the order flipped
every round), each with its tree's `src` first on `PYTHONPATH`. A client process does what `bench.percall` does
through the SDK — `--calls` one-event `append_sync_events` calls, one in flight, then `--calls` events sent one at a
time to a stream one SDK subscriber in the same process follows — and reports its own CPU per call of each phase
(`time.process_time`), events/s and the receipt p50. The receipt phase's CPU is the producer's call plus the
subscriber's receipt of the one-row `TransactionUpdate`, as in row b (the suite's producer and subscriber share one
process); the difference of the two phases is the subscriber's share. `--old-loop`/`--new-loop` run the two sides on
different event loops (e.g. the same tree on asyncio against uvloop).

Why its own script: the SDK runs in the benchmark's process, so `bench.percall_ab` (two hosts, one client) cannot
compare two SDKs; here the host is shared and only the client's code differs. Make the old tree with
`git archive <commit> src | tar -x -C /tmp/old`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.ab import Samples, interleaved, table

BENCH_ROOT = Path(__file__).resolve().parent.parent


async def _worker(args: argparse.Namespace) -> dict[str, float]:
    """One client process's rounds: publish then receipt, on streams the parent has granted and started at seq 1."""
    from autopilot_sync.client.connection import connect
    from autopilot_sync.client.results import ReducerCommitted
    from autopilot_sync.devtools.stack import DATABASE
    from autopilot_sync.spacetime.frames import Compression
    from autopilot_sync.sync_bindings import Reducers
    from bench.ours import event_input, resume_query
    from bench.stats import quantile
    from bench.suite import payload

    producer = await connect(args.url, DATABASE, token=args.producer_token, compression=Compression.NONE)
    reader = await connect(
        args.url, DATABASE, token=args.reader_token, compression=Compression.NONE, schema=producer.schema
    )
    reducers = Reducers(producer)

    async def append(stream: str, seq: int) -> None:
        result = await reducers.append_sync_events([event_input(stream, seq, payload(seq))])
        if not isinstance(result, ReducerCommitted):
            raise RuntimeError(f"append refused: {result}")

    try:
        cpu, sys_cpu, started = time.process_time(), os.times().system, time.perf_counter()
        for seq in range(2, args.calls + 2):
            await append(args.stream, seq)
        publish_cpu = (time.process_time() - cpu) / args.calls * 1e6
        publish_sys = (os.times().system - sys_cpu) / args.calls * 1e6
        rate = args.calls / (time.perf_counter() - started)

        arrived: asyncio.Queue[int] = asyncio.Queue()
        reader.cache.on_insert("sync_event", lambda row: arrived.put_nowait(time.perf_counter_ns()))
        await (await reader.subscribe([resume_query(args.receipt_stream, 1)])).applied()
        samples: list[float] = []
        cpu = time.process_time()
        for seq in range(2, args.calls + 2):
            sent = time.perf_counter_ns()
            await append(args.receipt_stream, seq)
            samples.append((await asyncio.wait_for(arrived.get(), 30) - sent) / 1e6)
        receipt_cpu = (time.process_time() - cpu) / args.calls * 1e6
    finally:
        await reader.close()
        await producer.close()
    return {
        "publish_client_cpu_us": publish_cpu,
        "receipt_client_cpu_us": receipt_cpu,
        "publish_client_system_cpu_us": publish_sys,
        "subscriber_share_us": receipt_cpu - publish_cpu,
        "unbatched_events_per_s": rate,
        "receipt_p50_ms": quantile(samples, 0.5),
    }


def _run_worker(args: argparse.Namespace) -> int:
    if args.loop == "uvloop":
        import uvloop

        result = uvloop.run(_worker(args))
    else:
        result = asyncio.run(_worker(args))
    print(json.dumps(result))
    return 0


def _client(
    src: str, loop: str, url: str, tokens: tuple[str, str], streams: tuple[str, str], calls: int
) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, str(BENCH_ROOT)])}
    argv = [sys.executable, "-m", "bench.sdkcall_ab", "--worker", "--url", url, "--loop", loop]
    argv += ["--producer-token", tokens[0], "--reader-token", tokens[1], "--calls", str(calls)]
    argv += ["--stream", streams[0], "--receipt-stream", streams[1]]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"client on {src} failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    from bench.ours import Ours, event_input
    from bench.suite import payload

    sides = {"old": (str(args.old), args.old_loop or args.loop), "new": (str(args.new), args.new_loop or args.loop)}
    samples = Samples()
    with tempfile.TemporaryDirectory(prefix="apsync-sdkcall-ab-") as scratch:
        ours = Ours(Path(scratch) / "ours")
        ours.start()
        try:
            tokens = (await ours.token(True), await ours.token(False))
            setup = await ours.connect(producer=True)
            try:
                for round_no, (name, (src, loop)) in interleaved(list(sides.items()), args.rounds):
                    streams = (f"p-{name}-{round_no}", f"r-{name}-{round_no}")
                    for stream in streams:  # grants the stream to both keys, seq 1: not timed
                        await ours.append(setup, [event_input(stream, 1, payload(1))])
                    row = await asyncio.to_thread(_client, src, loop, ours.url, tokens, streams, args.calls)
                    print(json.dumps({"side": name, **row}), file=sys.stderr)
                    samples.add(name, row)
            finally:
                await setup.close()
        finally:
            ours.stop()
    medians = samples.medians()
    print(table(medians), file=sys.stderr)
    return medians | {"load_average": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sdkcall_ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, help="the old tree's src folder")
    parser.add_argument("--new", type=Path, default=BENCH_ROOT / "src", help="the new tree's src folder")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--old-loop", choices=("asyncio", "uvloop"), default=None)
    parser.add_argument("--new-loop", choices=("asyncio", "uvloop"), default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--producer-token", help=argparse.SUPPRESS)
    parser.add_argument("--reader-token", help=argparse.SUPPRESS)
    parser.add_argument("--stream", help=argparse.SUPPRESS)
    parser.add_argument("--receipt-stream", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _run_worker(args)
    if args.old is None:
        parser.error("--old is required")
    print(json.dumps(asyncio.run(_run(args))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
