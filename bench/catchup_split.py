"""Where a resume catch-up's time goes: host CPU, client CPU and wall time per catch-up (issue 21, row (c)).

`python -m bench.catchup_split [--events 10000] [--rounds 7] [--py-spy OUT]` starts a real host and control (as row
(c) does, `bench/ours.py`), fills one stream, then resumes it from seq 0 `--rounds` times on fresh SDK connections,
each time reading the host process's CPU seconds (`/proc`) and this process's around the subscribe → applied
window. Prints the medians: the host's share (plan, initial rows, frame, socket writes) against the client's
(socket reads, frame decode, row check, cache). `--py-spy OUT` records the host with py-spy during the rounds
(raw collapsed stacks in OUT, `--idle` off) so the host's share can be split further. `--restart`: each round
restarts the host on its data first and times its first resume, as row (g) does. CPU times, not wall times, are
what compare on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.ours import Ours, resume_query
from bench.proc_cpu import process_cpu_seconds
from bench.suite import payload


def _host_cpu(pid: int) -> float:
    """The host's CPU seconds to the nanosecond: the run time of every thread (`/proc/<pid>/task/*/schedstat`),
    where `stat`'s 10 ms ticks would round a ~40 ms catch-up to 40 or 50; the ticks where there is no schedstat."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        return sum(int((task / "schedstat").read_text().split()[0]) for task in tasks) / 1e9
    except (OSError, ValueError, IndexError):
        return process_cpu_seconds(pid)


async def _rounds(
    ours: Ours, events: int, rounds: int, spy: str | None, restart: bool
) -> list[tuple[float, float, float]]:
    stream = "split-1"
    await ours.fill(stream, events, payload(0))
    if restart:
        return [await _first_after_restart(ours, stream, events, spy if i == 0 else None) for i in range(rounds)]
    recorder = None
    if spy:
        command = ["py-spy", "record", "-p", str(ours.host_pid), "-o", spy, "-f", "raw", "-r", "250"]
        recorder = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        await asyncio.sleep(1.0)
    samples = []
    try:
        for _ in range(rounds):
            conn = await ours.connect()
            try:
                host0, client0, wall0 = _host_cpu(ours.host_pid), time.process_time(), time.perf_counter()
                query_set = await conn.subscribe([resume_query(stream, 0)])
                await query_set.applied()
                wall = time.perf_counter() - wall0
                client, host = time.process_time() - client0, _host_cpu(ours.host_pid) - host0
                if conn.cache.count("sync_event") != events:
                    raise RuntimeError(f"resumed {conn.cache.count('sync_event')} of {events}")
            finally:
                await conn.close()
            samples.append((wall, host, client))
    finally:
        if recorder is not None:
            recorder.send_signal(signal.SIGINT)
            await asyncio.wait_for(recorder.wait(), 60)
    return samples


async def _first_after_restart(ours: Ours, stream: str, events: int, spy: str | None) -> tuple[float, float, float]:
    """Row (g)'s catch-up: the host killed and started again on its data, then one first resume (SDK connected)."""
    assert ours.stack.host is not None
    ours.stack.host.kill()
    ours.stack.start_host(timeout=600)
    conn = await ours.connect()
    recorder = None
    if spy:
        command = ["py-spy", "record", "-p", str(ours.host_pid), "-o", spy, "-f", "raw", "-r", "500"]
        recorder = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        await asyncio.sleep(1.0)
    try:
        host0, client0, wall0 = _host_cpu(ours.host_pid), time.process_time(), time.perf_counter()
        await (await conn.subscribe([resume_query(stream, 0)])).applied()
        wall = time.perf_counter() - wall0
        client, host = time.process_time() - client0, _host_cpu(ours.host_pid) - host0
    finally:
        await conn.close()
        if recorder is not None:
            recorder.send_signal(signal.SIGINT)
            await asyncio.wait_for(recorder.wait(), 60)
    return wall, host, client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--py-spy", dest="spy", default=None, help="record the host with py-spy into this file")
    parser.add_argument("--restart", action="store_true", help="each round: restart the host, time its first resume")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="catchup-split-") as root:
        ours = Ours(Path(root))
        ours.start()
        try:
            samples = asyncio.run(_rounds(ours, args.events, args.rounds, args.spy, args.restart))
        finally:
            ours.stop()
    wall, host, client = (statistics.median(s[i] for s in samples) for i in range(3))
    print(
        f"events {args.events}, {args.rounds} rounds (medians): wall {wall * 1e3:.1f} ms "
        f"= {args.events / wall:,.0f} events/s; host CPU {host * 1e3:.1f} ms, client CPU {client * 1e3:.1f} ms",
        file=sys.stdout,
    )


if __name__ == "__main__":
    main()
