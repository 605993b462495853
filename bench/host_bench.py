"""Host commit throughput: single-row reducer transactions per second, durable, over real WebSockets.

Usage: `.venv/bin/python bench/host_bench.py [--seconds 5] [--clients 1,8,32] [--no-fsync]`

Starts `autopilot-sync host` (chat module) as a process, then for each client count runs that many connections
calling `add_person` back to back (each call waits for its durable `ReducerResult`, so throughput comes from the
host's group commit folding concurrent calls into one fsync). Prints a Markdown table with commits/s and the call
latency median/p99, plus the host's own fsync count so the batching factor is visible.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from autopilot_sync.client import ReducerCommitted, connect
from autopilot_sync.devtools.processes import start_host


async def _client(url: str, worker: int, deadline: float, latencies: list[float]) -> int:
    connection = await connect(url, "chat")
    done = 0
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            outcome = await connection.call("add_person", f"w{worker}-{done}", done)
            latencies.append(time.perf_counter() - started)
            assert isinstance(outcome, ReducerCommitted), outcome
            done += 1
    finally:
        await connection.close()
    return done


async def _fsyncs(url: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith("autopilot_sync_host_commitlog_fsync_seconds_count"):
            return float(line.split()[1])
    return 0.0


async def _run(clients: int, seconds: float, fsync: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as data:
        host = start_host(
            Path(data),
            module="autopilot_sync.examples.chat",
            database="chat",
            env={"AUTOPILOT_SYNC_HOST_FSYNC": "true" if fsync else "false"},
        )
        try:
            latencies: list[float] = []
            before = await _fsyncs(host.url)
            started = time.perf_counter()
            deadline = started + seconds
            counts = await asyncio.gather(*(_client(host.url, w, deadline, latencies) for w in range(clients)))
            elapsed = time.perf_counter() - started
            fsyncs = await _fsyncs(host.url) - before
        finally:
            host.stop()
    commits = sum(counts)
    ordered = sorted(latencies)
    return {
        "clients": clients,
        "commits_per_s": commits / elapsed,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[int(0.99 * (len(ordered) - 1))] * 1000,
        "commits_per_fsync": commits / fsyncs if fsyncs else float("nan"),
    }


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--no-fsync", action="store_true")
    args = parser.parse_args()
    fsync = not args.no_fsync
    print(
        f"host commit throughput (chat module, add_person, fsync={'on' if fsync else 'off'}, {args.seconds:g}s each)\n"
    )
    print("| clients | commits/s | call p50 ms | call p99 ms | commits per fsync |")
    print("|---:|---:|---:|---:|---:|")
    for clients in (int(c) for c in args.clients.split(",")):
        row = asyncio.run(_run(clients, args.seconds, fsync))
        print(
            f"| {clients} | {row['commits_per_s']:.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} "
            f"| {row['commits_per_fsync']:.1f} |"
        )


if __name__ == "__main__":
    main()
