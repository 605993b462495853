"""Row (g)'s catch-up alone: the first resume from seq 1 right after a host restart on a large store, old against new.

`python -m bench.restart_catchup [--events 200000] [--streams 20] [--rounds 5] [--old SRC] [--py-spy OUT]` starts
control (and a host it never measures), fills a store host as row (g) does (`--streams` streams of `--events /
--streams` events, ~250-byte payloads, 500 per call, fsync off; the default snapshot-by-bytes rule leaves the store
a snapshot of the first ~130,000 events and the log after it), kills it, then per round and per variant starts a
host on that directory (snapshots off, so a start writes none; `--old SRC` runs SRC first on `PYTHONPATH`, an
exported older tree, e.g. `git archive <commit> src | tar -x -C /tmp/old`), and as soon as it prints `ready`,
connects an SDK reader and resumes the middle stream from seq 0, as `bench/workloads/store.py` does. Variants
alternate, the order flipping every round.

Prints per variant the medians of: wall from subscribe to `SubscribeApplied` in the cache (and events/s, row g's
measure), the host's CPU in that window (every thread, `/proc` ticks), its event-loop thread's CPU (`schedstat`), the
client's CPU, and the wall from the `ready` line to the rows in the cache (the connect included: what a client
reconnecting at `ready` waits, which a window-only measure would reward for a slower connect). `--py-spy OUT`
records the first round's new host from its `ready` line on (raw collapsed stacks, idle off). Wall times on a
shared machine mostly measure waiting for a core: compare CPU, interleaved, and read the load average printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from autopilot_sync.devtools.processes import ServiceProcess, free_port
from bench.ours import Ours, event_input, resume_query
from bench.proc_cpu import process_cpu_seconds
from bench.suite import payload

BATCH = 500
RECONNECT_EVERY = 100
QUIET = {
    "AUTOPILOT_SYNC_HOST_SNAPSHOT_EVERY_COMMITS": str(10**9),
    "AUTOPILOT_SYNC_HOST_SNAPSHOT_EVERY_BYTES": str(2**50),
}


def _schedstat(path: Path) -> float:
    try:
        return int(path.read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def _cpu(pid: int) -> tuple[float, float]:
    """(the process's CPU seconds, `/proc` ticks, counting threads that ended in the window; the main (event-loop)
    thread's, from its `schedstat`, ns)."""
    return process_cpu_seconds(pid), _schedstat(Path(f"/proc/{pid}/task/{pid}/schedstat"))


async def _fill(ours: Ours, data_dir: Path, port: int, streams: list[str], per_stream: int) -> None:
    host = ours.spawn_host(data_dir, port, {"AUTOPILOT_SYNC_HOST_FSYNC": "false"})
    url = f"http://127.0.0.1:{port}"
    try:
        await asyncio.to_thread(ours.trust, url)
        conn = await ours.connect(producer=True, url=url)
        calls = 0
        try:
            for stream in streams:
                for start in range(1, per_stream + 1, BATCH):
                    if calls and calls % RECONNECT_EVERY == 0:
                        await conn.close()
                        conn = await ours.connect(producer=True, url=url)
                    stop = min(per_stream + 1, start + BATCH)
                    await ours.append(conn, [event_input(stream, s, payload(s)) for s in range(start, stop)])
                    calls += 1
        finally:
            await conn.close()
    finally:
        host.kill()


async def _first_resume(
    ours: Ours,
    data_dir: Path,
    port: int,
    variant: tuple[str, str | None, float],
    stream: str,
    events: int,
    spy: str | None,
) -> tuple[float, float, float, float, float]:
    _, src, settle = variant
    env = dict(QUIET)
    if src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))
    host: ServiceProcess = ours.spawn_host(data_dir, port, env)
    ready = time.perf_counter()
    recorder = None
    try:
        if spy:
            command = [
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "-p",
                str(host.process.pid),
                "-o",
                spy,
                "-f",
                "raw",
                "-r",
                "1000",
            ]
            recorder = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
            )
        conn = await ours.connect(url=f"http://127.0.0.1:{port}")
        try:
            await asyncio.sleep(settle)
            (host0, loop0), client0, wall0 = _cpu(host.process.pid), time.process_time(), time.perf_counter()
            await (await conn.subscribe([resume_query(stream, 0)])).applied()
            applied = time.perf_counter()
            wall = applied - wall0
            client = time.process_time() - client0
            host1, loop1 = _cpu(host.process.pid)
            if conn.cache.count("sync_event") != events:
                raise RuntimeError(f"resumed {conn.cache.count('sync_event')} of {events}")
        finally:
            await conn.close()
        if recorder is not None:
            await asyncio.sleep(0.5)
    finally:
        if recorder is not None:
            recorder.send_signal(signal.SIGINT)
            await asyncio.wait_for(recorder.wait(), 60)
        host.kill()
    return wall, host1 - host0, loop1 - loop0, client, applied - ready - settle


async def run(args: argparse.Namespace, root: Path) -> dict[str, list[tuple[float, float, float, float, float]]]:
    ours = Ours(root)
    ours.start()
    try:
        data_dir, port = root / "store", free_port()
        per_stream = args.events // args.streams
        streams = [f"large-{i}" for i in range(args.streams)]
        started = time.perf_counter()
        await _fill(ours, data_dir, port, streams, per_stream)
        print(f"filled {per_stream * len(streams):,} events in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        trees: list[tuple[str, str | None]] = [("new", None)] + ([("old", args.old)] if args.old else [])
        variants = [
            (f"{name}+{settle:g}s" if settle else name, src, settle) for settle in args.settle for name, src in trees
        ]
        results: dict[str, list[tuple[float, float, float, float, float]]] = {name: [] for name, _, _ in variants}
        for round_no in range(args.rounds):
            order = variants if round_no % 2 == 0 else variants[::-1]
            for variant in order:
                name = variant[0]
                spy = args.spy if (round_no == 0 and name == "new") else None
                sample = await _first_resume(ours, data_dir, port, variant, streams[len(streams) // 2], per_stream, spy)
                results[name].append(sample)
                wall, host, loop, client, total = sample
                print(
                    f"  {name}: wall {wall * 1e3:.0f} ms, host {host * 1e3:.0f} (loop {loop * 1e3:.0f}), "
                    f"client {client * 1e3:.0f} ms; ready to applied {total * 1e3:.0f} ms",
                    file=sys.stderr,
                )
        return results
    finally:
        ours.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--old", default=None, help="an exported older src tree, run first on PYTHONPATH")
    parser.add_argument(
        "--settle", type=float, action="append", default=None, help="seconds between connect and subscribe (repeat)"
    )
    parser.add_argument("--py-spy", dest="spy", default=None, help="record the first new host into this file")
    args = parser.parse_args()
    args.settle = args.settle or [0.0]
    with tempfile.TemporaryDirectory(prefix="restart-catchup-") as root:
        results = asyncio.run(run(args, Path(root)))
    per_stream = args.events // args.streams
    print(f"first resume after a restart, {per_stream:,} of {args.events:,} events, load average {os.getloadavg()}")
    for name, samples in results.items():
        wall, host, loop, client, total = (statistics.median(s[i] for s in samples) for i in range(5))
        print(
            f"{name}: wall {wall * 1e3:.1f} ms = {per_stream / wall:,.0f} events/s; host CPU {host * 1e3:.1f} ms "
            f"(loop thread {loop * 1e3:.1f}), client CPU {client * 1e3:.1f} ms; ready to applied (connect included, "
            f"settle not) {total * 1e3:.0f} ms; walls " + ", ".join(f"{s[0] * 1e3:.0f}" for s in samples)
        )


if __name__ == "__main__":
    main()
