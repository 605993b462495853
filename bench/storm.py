"""Reconnect storm on our system alone: seconds until N clients are live, and the host's CPU per client.

`python -m bench.storm [--clients 500] [--rounds 3] [--profile /tmp/storm.txt]` starts our host and control (as
`python -m bench` does), fills one stream with 100 events, then per round lets `--clients` SDK clients connect at
once (the upgrade with the session token each already holds, `InitialConnection`) and resume 10 events behind
(subscribe until `SubscribeApplied`), exactly as row (d) does; it prints seconds until all are live and the host
process's CPU time per client (user + system, from /proc), which is what a host-side change moves even when the
benchmark process (the clients) shares the machine's two cores. With `--profile` py-spy records the host during
the first round (collapsed stacks for a `.txt` name, speedscope for `.json`, else an SVG flame graph).

To compare code versions, run it with the old tree first on `PYTHONPATH` (the host child inherits it), e.g.
`git archive HEAD~1 src | tar -x -C /tmp/old` then `PYTHONPATH=/tmp/old/src python -m bench.storm`, alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.ours import Ours, resume_query
from bench.percall import start_profiler
from bench.proc_cpu import process_cpu_seconds
from bench.stats import round_report
from bench.suite import _more_files, payload
from bench.workloads.storm import BEHIND, HELD


async def storm_round(ours: Ours, stream: str, clients: int) -> tuple[float, float, float]:
    """One storm: (seconds until all live, host CPU ms per client, benchmark-process CPU ms per client)."""
    conns: list[Any] = []

    async def one() -> None:
        conn = await ours.connect()
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
        return seconds, host, own
    finally:
        await asyncio.gather(*(conn.close() for conn in conns), return_exceptions=True)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="apsync-storm-") as scratch:
        ours = Ours(Path(scratch) / "ours")
        ours.start()
        try:
            stream = "storm-1"
            await ours.fill(stream, HELD, payload(0))
            await ours.token(False)
            warm = await ours.connect()
            await warm.close()
            rows: list[dict[str, float]] = []
            for round_no in range(args.rounds):
                profiler = start_profiler(ours.host_pid, args.profile) if args.profile and round_no == 0 else None
                if profiler is not None:
                    await asyncio.sleep(1.0)  # py-spy attaches
                seconds, host, own = await storm_round(ours, stream, args.clients)
                if profiler is not None:
                    profiler.send_signal(2)
                    profiler.wait(60)
                await asyncio.sleep(1.0)  # the closes' client_disconnected calls finish before the next round
                row = {
                    "seconds": seconds,
                    "clients_per_s": args.clients / seconds,
                    "host_cpu_ms_per_client": host,
                    "bench_cpu_ms_per_client": own,
                }
                print(json.dumps(row), file=sys.stderr)
                rows.append(row)
        finally:
            ours.stop()
    return round_report(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=500, help="clients per storm")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", type=Path, default=None, help="py-spy output of the first round")
    with _more_files():
        results = asyncio.run(run(parser.parse_args(argv)))
    print(json.dumps(results["median"] | {"load_average": results["load_average"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
