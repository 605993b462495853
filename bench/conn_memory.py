"""Where an idle subscribed connection's memory goes in the host, by allocation site.

`python -m bench.conn_memory [--first 1000] [--second 5000] [--top 30]` starts the bench's host + control (as row
(e) does) with `tracemalloc` running in the host, opens `--first` idle subscribed connections exactly as row (e)
opens them (token exchange, upgrade, `client_connected`, one resume subscription to its own stream, answered),
snapshots the host's heap, opens more up to `--second`, snapshots again, and prints the growth between the two
snapshots per connection by allocation site (file:line), biggest first, plus RSS per connection over the same
span. The difference of two sizes leaves out what every host has once (imports, the first connection's caches).

The host is the real process (`python -m autopilot_sync host`); the snapshots are taken by a `sitecustomize`
placed on the host's `PYTHONPATH` only for this run, which dumps a snapshot to a file on SIGUSR1. Nothing in the
host knows about it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import aiohttp

from bench.ours import LightSubscriber, Ours, resume_query
from bench.peers.common import rss_bytes
from bench.suite import _more_files

#: Installed in the host through PYTHONPATH: SIGUSR1 writes a tracemalloc snapshot to $BENCH_TRACEMALLOC_OUT.
SITECUSTOMIZE = """
import os, signal, tracemalloc
if tracemalloc.is_tracing() and os.environ.get("BENCH_TRACEMALLOC_OUT"):
    def _dump(signum, frame):
        import gc
        gc.collect()
        path = os.environ["BENCH_TRACEMALLOC_OUT"]
        tracemalloc.take_snapshot().dump(path + ".tmp")
        os.replace(path + ".tmp", path)
    signal.signal(signal.SIGUSR1, _dump)
"""
SETTLE_SECONDS = 1.0
OPEN_CHUNK = 100


async def snapshot(pid: int, out: Path) -> tracemalloc.Snapshot:
    """Ask the host for a heap snapshot and wait until it is written."""
    out.unlink(missing_ok=True)  # noqa: ASYNC240 - a benchmark tool, nothing else runs on this loop meanwhile
    os.kill(pid, signal.SIGUSR1)
    for _ in range(1200):
        if os.path.exists(out):  # noqa: ASYNC240
            return tracemalloc.Snapshot.load(str(out))
        await asyncio.sleep(0.1)
    raise RuntimeError("the host wrote no snapshot")


async def run(first: int, second: int, top: int, depth: int) -> None:
    with tempfile.TemporaryDirectory(prefix="conn-memory-") as tmp:
        root = Path(tmp)
        site = root / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        out = root / "heap.snapshot"
        ours = Ours(root / "stack")
        if depth > 0:
            ours.stack.host_env = {
                **ours.stack.host_env,
                "PYTHONPATH": os.pathsep.join([str(site), *sys.path[1:]]),
                "PYTHONTRACEMALLOC": str(depth),
                "BENCH_TRACEMALLOC_OUT": str(out),
            }
        ours.start()
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        subs: list[LightSubscriber] = []
        try:
            await ours.token(False)

            async def open_up_to(n: int) -> None:
                while len(subs) < n:
                    start = len(subs)
                    chunk = [LightSubscriber() for _ in range(min(OPEN_CHUNK, n - start))]
                    await asyncio.gather(
                        *(sub.open(ours, session, resume_query(f"idle-{start + i}", 0)) for i, sub in enumerate(chunk))
                    )
                    await asyncio.gather(*(sub.answered.wait() for sub in chunk))
                    subs.extend(chunk)
                await asyncio.sleep(SETTLE_SECONDS)

            started = time.perf_counter()
            await open_up_to(first)
            rss_first = rss_bytes(ours.host_pid)
            heap_first = await snapshot(ours.host_pid, out) if depth > 0 else None
            await open_up_to(second)
            rss_second = rss_bytes(ours.host_pid)
            live = sum(1 for sub in subs if sub.live)
            span = second - first
            if heap_first is None:
                print(f"connections {first} -> {second} ({live} live), load {os.getloadavg()[0]:.1f}")
                print(f"RSS per connection (no tracing): {(rss_second - rss_first) / span / 1000:.1f} KB")
                return
            heap_second = await snapshot(ours.host_pid, out)
            stats = heap_second.compare_to(heap_first, "lineno" if depth <= 1 else "traceback")
            total = sum(stat.size_diff for stat in stats)
            print(f"connections {first} -> {second} ({live} live, {time.perf_counter() - started:.0f} s)")
            print(f"RSS per connection: {(rss_second - rss_first) / span / 1000:.1f} KB")
            print(f"traced heap per connection: {total / span / 1000:.1f} KB")
            print(f"{'bytes/conn':>10} {'objs/conn':>9}  site")
            for stat in stats[:top]:
                frames = stat.traceback if depth > 1 else stat.traceback[:1]
                where = " <- ".join(f"{_short(f.filename)}:{f.lineno}" for f in frames)
                print(f"{stat.size_diff / span:>10.0f} {stat.count_diff / span:>9.2f}  {where}")
        finally:
            for sub in subs:
                await sub.close()
            await session.close()
            ours.stop()


def _short(filename: str) -> str:
    for marker in ("site-packages/", "src/", "lib/python3"):
        cut = filename.find(marker)
        if cut >= 0:
            return filename[cut + len(marker) :]
    return filename


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--first", type=int, default=1000, help="connections at the first snapshot")
    parser.add_argument("--second", type=int, default=5000, help="connections at the second snapshot")
    parser.add_argument("--top", type=int, default=30, help="allocation sites to print")
    parser.add_argument(
        "--depth", type=int, default=1, help="frames per allocation (more: by traceback; 0: no tracing, RSS only)"
    )
    args = parser.parse_args()
    with _more_files():
        asyncio.run(run(args.first, args.second, args.top, args.depth))


if __name__ == "__main__":
    main()
