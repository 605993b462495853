"""Client SDK benchmark against a real host process: reducer round-trip latency and subscription throughput.

Usage: `.venv/bin/python bench/client_bench.py [--calls 500] [--batches 50] [--batch-size 200] [--no-fsync]`.
Starts `autopilot-sync host` (chat module) on a free port with a temporary data directory, and prints a Markdown
table. Latency: sequential `add_person` calls on one connection, timed from send to `ReducerResult`. Throughput: a
second client subscribed to `person` while the first inserts batches with `add_people`; rows/s counts the rows that
reached the subscriber's cache.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from autopilot_sync.client import ReducerCommitted, connect
from autopilot_sync.devtools.processes import start_host

DATABASE = "chat"


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def _run(args: argparse.Namespace) -> list[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        host = start_host(
            Path(tmp),
            module="autopilot_sync.examples.chat",
            database=DATABASE,
            env={"AUTOPILOT_SYNC_HOST_FSYNC": "true" if args.fsync else "false"},
        )
        base_url = host.url
        try:
            async with await connect(base_url, DATABASE) as writer, await connect(base_url, DATABASE) as reader:
                latencies = []
                for i in range(args.calls):
                    started = time.perf_counter()
                    result = await writer.call("add_person", f"lat-{i}", i)
                    latencies.append((time.perf_counter() - started) * 1000)
                    assert isinstance(result, ReducerCommitted), result
                expected = args.batches * args.batch_size
                received = 0
                done = asyncio.Event()

                def count(_: Any) -> None:
                    nonlocal received
                    received += 1
                    if received >= expected:
                        done.set()

                await (await reader.subscribe(["SELECT * FROM person"])).applied()
                reader.cache.on_insert("person", count)
                started = time.perf_counter()
                for b in range(args.batches):
                    names = [f"tp-{b}-{i}" for i in range(args.batch_size)]
                    result = await writer.call("add_people", names)
                    assert isinstance(result, ReducerCommitted), result
                await asyncio.wait_for(done.wait(), 120)
                elapsed = time.perf_counter() - started
        finally:
            host.stop()
    return [
        ("reducer round trip p50", f"{statistics.median(latencies):.2f} ms"),
        ("reducer round trip p99", f"{_percentile(latencies, 0.99):.2f} ms"),
        ("reducer calls", str(args.calls)),
        ("subscription update throughput", f"{expected / elapsed:,.0f} rows/s"),
        ("rows delivered", f"{expected} in {args.batches} transactions"),
        ("host fsync", "on" if args.fsync else "off"),
    ]


def main() -> None:
    """Parse flags, run both measurements, print the Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=500, help="sequential reducer calls for the latency figures")
    parser.add_argument("--batches", type=int, default=50, help="transactions in the throughput run")
    parser.add_argument("--batch-size", type=int, default=200, help="rows per transaction in the throughput run")
    parser.add_argument("--no-fsync", dest="fsync", action="store_false", help="run the host without fsync")
    rows = asyncio.run(_run(parser.parse_args()))
    print("| metric | value |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
