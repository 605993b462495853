"""Reconnect storm on our system alone: seconds until N clients are live, and the host's CPU per client.

`python -m bench.storm [--clients 500] [--rounds 3] [--profile /tmp/storm.txt]` starts our host and control (as
`python -m bench` does), fills one stream with 100 events, then per round lets `--clients` SDK clients connect at
once (the upgrade with the session token each already holds, `InitialConnection`) and resume 10 events behind
(subscribe until `SubscribeApplied`), exactly as row (d) does; it prints seconds until all are live and the host
process's CPU time per client (user + system, from /proc), which is what a host-side change moves even when the
benchmark process (the clients) shares the machine's two cores. With `--profile` py-spy records the host during
the first round (collapsed stacks for a `.txt` name, speedscope for `.json`, else an SVG flame graph), and with
`--profile-bench` the benchmark's own process (the SDK clients) in the same round.

To compare code versions, `--old /tmp/old/src` (made with `git archive HEAD~1 src | tar -x -C /tmp/old`) starts a
second host and control with that tree on `PYTHONPATH` (the children inherit it) and alternates the storms between
the two hosts in one run, flipping the order every round; it prints the medians per host. The clients always run
this tree's SDK, so what differs is the host alone.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from autopilot_sync.client.errors import ConnectError
from bench.ab import interleaved, on_pythonpath
from bench.ours import Ours, resume_query
from bench.percall import start_profiler
from bench.proc_cpu import process_cpu_seconds
from bench.stats import round_report
from bench.suite import _more_files, payload
from bench.workloads.storm import BEHIND, HANDSHAKE_TIMEOUT, HELD


async def storm_round(ours: Ours, stream: str, clients: int) -> tuple[float, float, float, int, float]:
    """One storm: (seconds until all live or failed, host CPU ms per client, benchmark-process CPU ms per client,
    clients that failed: a `ConnectError` such as the SDK's 10 s handshake timeout, host CPU ms per close: the
    clients then close and the host runs `client_disconnected` for each, as the other half of a reconnect)."""
    conns: list[Any] = []
    failed = 0

    async def one() -> None:
        nonlocal failed
        try:
            conn = await ours.connect(handshake_timeout=HANDSHAKE_TIMEOUT)
        except ConnectError:
            failed += 1
            return
        conns.append(conn)
        await (await conn.subscribe([resume_query(stream, HELD - BEHIND)])).applied()
        if conn.cache.count("sync_event") != BEHIND:
            raise RuntimeError("resume returned the wrong rows")

    host_cpu = process_cpu_seconds(ours.host_pid)
    own_cpu = time.process_time()
    started = time.perf_counter()
    try:
        await asyncio.gather(*(one() for _ in range(clients)))
        seconds = time.perf_counter() - started
        host = (process_cpu_seconds(ours.host_pid) - host_cpu) / clients * 1000
        own = (time.process_time() - own_cpu) / clients * 1000
    finally:
        closing_cpu = process_cpu_seconds(ours.host_pid)
        await asyncio.gather(*(conn.close() for conn in conns), return_exceptions=True)
        await asyncio.sleep(1.0)  # the closes' client_disconnected calls finish (before the next round, too)
    closes = (process_cpu_seconds(ours.host_pid) - closing_cpu) / max(1, len(conns)) * 1000
    return seconds, host, own, failed, closes


def start_host(root: Path, pythonpath: str | None) -> Ours:
    """Our host and control under `root`, with `pythonpath` (a tree's `src`) on the children's `PYTHONPATH`."""
    with on_pythonpath(pythonpath):
        ours = Ours(root)
        ours.start()
    return ours


async def run(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="apsync-storm-") as scratch:
        hosts: dict[str, Ours] = {}
        try:
            if args.old is not None:
                hosts["old"] = start_host(Path(scratch) / "old", str(args.old))
            hosts["new"] = start_host(Path(scratch) / "new", None)
            stream = "storm-1"
            for ours in hosts.values():
                await ours.fill(stream, HELD, payload(0))
                await ours.token(False)
                warm = await ours.connect()
                await warm.close()
            rows: dict[str, list[dict[str, float]]] = {name: [] for name in hosts}
            for round_no, (name, ours) in interleaved(list(hosts.items()), args.rounds):
                first = args.profile and round_no == 0 and name == "new"
                profilers: list[subprocess.Popen[bytes]] = []
                if first:
                    profilers.append(start_profiler(ours.host_pid, args.profile))
                    if args.profile_bench is not None:
                        profilers.append(start_profiler(os.getpid(), args.profile_bench))
                    await asyncio.sleep(1.0)  # py-spy attaches
                # As `suite.run_workload` does for row (d): the imports' heap frozen out of full collections.
                gc.collect()
                gc.freeze()
                try:
                    seconds, host, own, failed, closes = await storm_round(ours, stream, args.clients)
                finally:
                    gc.unfreeze()
                for profiler in profilers:
                    profiler.send_signal(2)
                    profiler.wait(60)
                row = {
                    "seconds": seconds,
                    "clients_per_s": args.clients / seconds,
                    "host_cpu_ms_per_client": host,
                    "bench_cpu_ms_per_client": own,
                    "failed_clients": failed,
                    "host_cpu_ms_per_close": closes,
                }
                print(json.dumps({"host": name} | row), file=sys.stderr)
                rows[name].append(row)
        finally:
            for ours in hosts.values():
                ours.stop()
    return {name: round_report(found) for name, found in rows.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=500, help="clients per storm")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", type=Path, default=None, help="py-spy output of the first round")
    parser.add_argument(
        "--profile-bench", type=Path, default=None, help="with --profile: py-spy output of the clients' process too"
    )
    parser.add_argument("--old", type=Path, default=None, help="an old tree's src: storms alternate between both")
    with _more_files():
        results = asyncio.run(run(parser.parse_args(argv)))
    medians = {name: found["median"] | {"load_average": found["load_average"]} for name, found in results.items()}
    print(json.dumps(medians))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
