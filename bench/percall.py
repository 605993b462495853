"""Per-call cost: unbatched durable publish and publish → receipt with one subscriber, optionally under py-spy.

`python -m bench.percall [--calls 1000] [--rounds 3] [--profile /tmp/host.svg]` starts our host and control (as
`python -m bench` does), then per round: `--calls` one-event `append_sync_events` calls, one in flight (events/s, the
p50 of call → `ReducerResult`, CPU per call of the host and of this client process), and `--calls` events sent one at
a time to a stream one SDK subscriber follows, each timed from the send to the subscriber's cache (p50, p99). With
`--profile` py-spy records the host process during the first round's publish phase, and its receipt phase into
`<name>-receipt<suffix>` (speedscope for a `.json` name, collapsed stacks for `.txt`, else an SVG flame graph).

Why its own script: a code change is judged by old against new in one session, alternating; this measures just the
per-call numbers the change targets, in seconds rather than the suite's minutes. To compare code versions, run it
with the old tree first on `PYTHONPATH` (the host child inherits it), e.g. `git archive HEAD~1 src | tar -x -C /tmp/old`
then `PYTHONPATH=/tmp/old/src python -m bench.percall`, alternating with the working tree.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.ours import Ours, event_input, resume_query
from bench.proc_cpu import process_cpu_seconds
from bench.stats import median, quantile, round_report
from bench.suite import client_loop_factory, payload

PROFILE_RATE = 250


class CpuMeter:
    """CPU microseconds per call of the host process and of this (the client's) process over one phase.

    Why: wall time on a shared machine mostly measures the other processes; CPU per call says which side a change
    has to shrink.
    """

    def __init__(self, host_pid: int) -> None:
        self.host_pid = host_pid
        self.host = process_cpu_seconds(host_pid)
        self.client = time.process_time()

    def per_call(self, calls: int) -> tuple[float, float]:
        """(host, client) CPU microseconds per call since this meter was made."""
        host = process_cpu_seconds(self.host_pid) - self.host
        client = time.process_time() - self.client
        return host / calls * 1e6, client / calls * 1e6


async def publish_round(ours: Ours, stream: str, calls: int) -> tuple[float, float, float, float]:
    """`calls` one-event appends, one in flight: (events/s, p50 ms of call → answer, host and client CPU µs/call)."""
    conn = await ours.connect(producer=True)
    try:
        await ours.append(conn, [event_input(stream, 1, payload(1))])  # grants the stream: not timed
        took: list[float] = []
        meter = CpuMeter(ours.host_pid)
        started = time.perf_counter()
        for seq in range(2, calls + 2):
            sent = time.perf_counter()
            await ours.append(conn, [event_input(stream, seq, payload(seq))])
            took.append(time.perf_counter() - sent)
        rate = calls / (time.perf_counter() - started)
        return rate, median(took) * 1000, *meter.per_call(calls)
    finally:
        await conn.close()


async def receipt_round(ours: Ours, stream: str, calls: int) -> tuple[float, float]:
    """`calls` events, each sent after the previous reached the subscriber: (p50, p99) ms of send → receipt."""
    producer = await ours.connect(producer=True)
    reader = await ours.connect()
    try:
        await ours.append(producer, [event_input(stream, 1, payload(1))])
        arrived: asyncio.Queue[int] = asyncio.Queue()
        reader.cache.on_insert("sync_event", lambda row: arrived.put_nowait(time.perf_counter_ns()))
        await (await reader.subscribe([resume_query(stream, 1)])).applied()
        samples: list[float] = []
        for seq in range(2, calls + 2):
            sent = time.perf_counter_ns()
            await ours.append(producer, [event_input(stream, seq, payload(seq))])
            samples.append((await asyncio.wait_for(arrived.get(), 30) - sent) / 1e6)
        return quantile(samples, 0.5), quantile(samples, 0.99)
    finally:
        await reader.close()
        await producer.close()


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy on the host while the publish phase runs (stopped with SIGINT, which makes it write `out`)."""
    binary = Path(sys.executable).parent / "py-spy"
    form = {".json": "speedscope", ".txt": "raw"}.get(out.suffix, "flamegraph")
    args = [str(binary), "record", "-r", str(PROFILE_RATE), "--pid", str(pid), "-o", str(out), "-f", form]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="apsync-percall-") as scratch:
        ours = Ours(Path(scratch) / "ours")
        ours.start()
        try:
            warm = await ours.connect(producer=True)
            await warm.close()
            rows: list[dict[str, float]] = []
            for round_no in range(args.rounds):
                profiler = start_profiler(ours.host_pid, args.profile) if args.profile and round_no == 0 else None
                if profiler is not None:
                    await asyncio.sleep(1.0)  # py-spy attaches
                rate, ack, host_cpu, client_cpu = await publish_round(ours, f"pc-{round_no}", args.calls)
                if profiler is not None:
                    profiler.send_signal(2)
                    profiler.wait(60)
                    receipt_out = args.profile.with_name(f"{args.profile.stem}-receipt{args.profile.suffix}")
                    profiler = start_profiler(ours.host_pid, receipt_out)
                    await asyncio.sleep(1.0)
                p50, p99 = await receipt_round(ours, f"rc-{round_no}", args.calls)
                if profiler is not None:
                    profiler.send_signal(2)
                    profiler.wait(60)
                row = {
                    "unbatched_events_per_s": rate,
                    "ack_p50_ms": ack,
                    "host_cpu_us_per_call": host_cpu,
                    "client_cpu_us_per_call": client_cpu,
                    "receipt_p50_ms": p50,
                    "receipt_p99_ms": p99,
                }
                print(json.dumps(row), file=sys.stderr)
                rows.append(row)
        finally:
            ours.stop()
    return round_report(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.percall", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls per phase per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", type=Path, default=None, help="py-spy output of the first publish phase")
    with asyncio.Runner(loop_factory=client_loop_factory()) as runner:  # as the suite's client (bench/suite.py)
        results = runner.run(run(parser.parse_args(argv)))
    print(json.dumps(results["median"] | {"load_average": results["load_average"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
