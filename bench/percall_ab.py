"""Old against new per-call cost in one run: two hosts side by side, unbatched publish rounds alternating.

`python -m bench.percall_ab --old /tmp/old/src [--rounds 8] [--calls 600] [--receipt] [--new-env KEY=VALUE]` starts
one host (and its control) with the old tree on `PYTHONPATH` and one with this tree (`--new-env`: extra environment of
the new host only, e.g. a setting the old tree does not have), then alternates `--calls`-call unbatched publish
rounds between them, flipping the order every round, and prints per host the medians of: events/s, host CPU per
call (`/proc/<pid>/stat`), the event-loop thread's CPU per call (`/proc/<pid>/task/<pid>/stat`) and, with
`--receipt`, the one-subscriber publish → receipt p50 and the host's CPU per event of that phase (the subscriber's
stream is read through the sync module's row-level security join, so this is what a change to fan-out moves).

Why: on a shared machine wall time mostly measures the other processes and the disk (fsync took ~5 ms at load 7);
CPU per call of the host, interleaved in one run, is what a change to the host's per-call path moves. Make the old
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
from pathlib import Path

from bench.ab import Samples, interleaved, on_pythonpath, table
from bench.ours import Ours
from bench.percall import publish_round, receipt_round
from bench.proc_cpu import process_cpu_seconds, thread_cpu_seconds


async def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="apsync-percall-ab-") as scratch:
        hosts: dict[str, Ours] = {}
        for name, path in (("old", str(args.old)), ("new", None)):
            extra = dict(item.split("=", 1) for item in args.new_env) if name == "new" else {}
            saved = {key: os.environ.get(key) for key in extra}
            os.environ.update(extra)
            try:
                with on_pythonpath(path):  # the host child inherits it
                    hosts[name] = Ours(Path(scratch) / name)
                    hosts[name].start()
            finally:
                for key, value in saved.items():  # as it was for whatever starts later
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
        samples = Samples()
        try:
            for ours in hosts.values():
                await publish_round(ours, "warm", 200)
            for round_no, (name, ours) in interleaved(list(hosts.items()), args.rounds):
                pid = ours.host_pid
                cpu, loop_cpu = process_cpu_seconds(pid), thread_cpu_seconds(pid)
                rate, _, _, _ = await publish_round(ours, f"ab-{round_no}", args.calls)
                row = {
                    "unbatched_events_per_s": rate,
                    "host_cpu_us_per_call": (process_cpu_seconds(pid) - cpu) / args.calls * 1e6,
                    "loop_cpu_us_per_call": (thread_cpu_seconds(pid) - loop_cpu) / args.calls * 1e6,
                }
                if args.receipt:
                    cpu, loop_cpu = process_cpu_seconds(pid), thread_cpu_seconds(pid)
                    row["receipt_p50_ms"] = (await receipt_round(ours, f"abr-{round_no}", args.calls // 2))[0]
                    events = args.calls // 2
                    row["receipt_host_cpu_us_per_event"] = (process_cpu_seconds(pid) - cpu) / events * 1e6
                    row["receipt_loop_cpu_us_per_event"] = (thread_cpu_seconds(pid) - loop_cpu) / events * 1e6
                samples.add(name, row)
        finally:
            for ours in hosts.values():
                ours.stop()
    return samples.medians()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.percall_ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, required=True, help="the old tree's src folder")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--receipt", action="store_true", help="also time publish -> receipt with one subscriber")
    parser.add_argument("--new-env", action="append", default=[], help="KEY=VALUE for the new host only (repeatable)")
    results = asyncio.run(run(parser.parse_args(argv)))
    print(json.dumps(results | {"load_average": os.getloadavg()}))
    print(table(results), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
