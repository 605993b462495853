"""Batched publish, CPU per event: host process, its event-loop thread and this (the producer's) process.

`python -m bench.batched_ab [--old /tmp/old/src] [--rounds 6] [--calls 40] [--batch 100] [--profile host.txt]`
starts one host (and its control) per tree — with `--old`, one with the old tree on `PYTHONPATH` and one with this
tree — and runs `--calls` `append_sync_events` calls of `--batch` events each, one call in flight (row a batched),
alternating between the hosts round by round (the order flipped every round). Per host it prints the medians of:
events/s, host CPU per event (`/proc/<pid>/stat`), the event-loop thread's CPU per event, and the producer's CPU per
event (this process: building each event's input with its canonical payload and hash, the SDK's argument encode,
the frame and the answer). With `--profile` py-spy records the (new) host during its first round (speedscope for
`.json`, collapsed stacks for `.txt`, else an SVG).

Why: row a batched is per-event cost (host and producer), and on a shared machine wall time mostly measures the
other processes; CPU per event of each side, interleaved in one run, is what a per-event change moves. Make the old
tree with `git archive <commit> src | tar -x -C /tmp/old` (or `bench.ab.export_tree`); the medians also go to
stderr as a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.ab import Samples, interleaved, on_pythonpath, table
from bench.ours import Ours, event_input
from bench.percall import start_profiler
from bench.proc_cpu import process_cpu_seconds, thread_cpu_seconds
from bench.suite import payload


async def batched_round(ours: Ours, stream: str, calls: int, batch: int) -> dict[str, float]:
    """`calls` appends of `batch` events, one in flight, as row a builds them: rate and CPU µs per event."""
    conn = await ours.connect(producer=True)
    try:
        await ours.append(conn, [event_input(stream, 1, payload(1))])  # grants the stream: not measured
        pid = ours.host_pid
        host, loop, client = process_cpu_seconds(pid), thread_cpu_seconds(pid), time.process_time()
        started = time.perf_counter()
        for first in range(2, 2 + calls * batch, batch):
            events = [event_input(stream, seq, payload(seq)) for seq in range(first, first + batch)]
            await ours.append(conn, events)
        elapsed = time.perf_counter() - started
        events_sent = calls * batch
        return {
            "events_per_s": events_sent / elapsed,
            "host_cpu_us_per_event": (process_cpu_seconds(pid) - host) / events_sent * 1e6,
            "loop_cpu_us_per_event": (thread_cpu_seconds(pid) - loop) / events_sent * 1e6,
            "client_cpu_us_per_event": (time.process_time() - client) / events_sent * 1e6,
        }
    finally:
        await conn.close()


async def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="apsync-batched-ab-") as scratch:
        hosts: dict[str, Ours] = {}
        for name, path in ([("old", str(args.old))] if args.old else []) + [("new", None)]:
            with on_pythonpath(path):  # the host child inherits it
                hosts[name] = Ours(Path(scratch) / name)
                hosts[name].start()
        samples = Samples()
        try:
            for name, ours in hosts.items():
                await batched_round(ours, f"warm-{name}", 5, args.batch)
            for round_no, (name, ours) in interleaved(list(hosts.items()), args.rounds):
                profiler = None
                if args.profile and round_no == 0 and name == "new":
                    profiler = start_profiler(ours.host_pid, args.profile)
                    await asyncio.sleep(1.0)  # py-spy attaches
                row = await batched_round(ours, f"ab-{round_no}", args.calls, args.batch)
                if profiler is not None:
                    profiler.send_signal(2)
                    profiler.wait(60)
                samples.add(name, row)
        finally:
            for ours in hosts.values():
                ours.stop()
    return samples.medians()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.batched_ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, default=None, help="the old tree's src folder (omit: this tree only)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=40, help="calls per round")
    parser.add_argument("--batch", type=int, default=100, help="events per call")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy output of the new host's first round")
    results = asyncio.run(run(parser.parse_args(argv)))
    print(json.dumps(results | {"load_average": os.getloadavg()}))
    print(table(results), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
