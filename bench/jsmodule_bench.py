"""TypeScript-module cost: what one crossing into the Node module runner costs, through the engine (issue 18, ADR 0003).

Usage: `.venv/bin/python bench/jsmodule_bench.py [--calls 2000] [--syscalls 200]`

Hosts a tiny module built on the pinned `spacetimedb/server` bundle (from `conformance/node_modules`) as a `JsModule`
in a real `HostEngine` (commit log in a scratch directory, fsync off: the crossing is measured, not the disk).
Prints a Markdown table of medians:
- a bare frame round trip host -> runner -> host (`ping`, no JavaScript of the module runs);
- an empty reducer call through the engine (a transaction, `__call_reducer__`, no syscalls);
- one syscall round trip runner -> host -> runner, measured inside a reducer that makes N
  `ctx.db.bench_row.count()` calls (one `datastore_table_row_count` each), minus the empty call, divided by N;
- a reducer that inserts one row and logs a line (one syscall: ids are cached in the runner, the log is one-way).
Numbers depend on the machine's load; they are a cost row, never a test.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from autopilot_sync.host.call_outcome import CallStatus
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.host.js_module import JsModule
from autopilot_sync.jsmodule.runner import RunnerLimits

ROOT = Path(__file__).resolve().parents[1]
SERVER_BUNDLE = ROOT / "conformance" / "node_modules" / "spacetimedb" / "dist" / "server" / "index.mjs"

MODULE = """
import { schema, table, t } from '@SERVER@';
const bench_row = table({ name: 'bench_row' }, { id: t.u64().primaryKey().autoInc(), text: t.string() });
const spacetimedb = schema({ bench_row });
export default spacetimedb;
export const empty = spacetimedb.reducer((_ctx) => {});
export const count_many = spacetimedb.reducer({ n: t.u32() }, (ctx, { n }) => {
  for (let i = 0; i < n; i++) ctx.db.bench_row.count();
});
export const insert_one = spacetimedb.reducer({ text: t.string() }, (ctx, { text }) => {
  const row = ctx.db.bench_row.insert({ id: 0n, text });
  console.debug(`inserted ${row.id}`);
});
"""


def _median_us(samples: int, action: Callable[[], None]) -> float:
    times = []
    for _ in range(samples):
        started = time.perf_counter_ns()
        action()
        times.append(time.perf_counter_ns() - started)
    return statistics.median(times) / 1000


async def _measure(module: JsModule, data_dir: Path, calls: int, syscalls: int) -> dict[str, float]:
    engine = HostEngine(module, data_dir, "bench", EngineConfig(fsync=False, snapshot_every=10**9))
    await engine.start()

    def run(reducer: str, *args: object) -> None:
        outcome, _ = engine.run_transaction(reducer, args)
        if outcome.status is not CallStatus.COMMITTED:
            raise SystemExit(f"{reducer} failed: {outcome.message}")

    try:
        for _ in range(200):  # warm up the JIT and the pipes
            run("empty")
            run("count_many", syscalls)
            run("insert_one", "warm")
        ping = _median_us(calls, module.runner.ping)
        empty = _median_us(calls, lambda: run("empty"))
        many = _median_us(max(1, calls // 10), lambda: run("count_many", syscalls))
        insert = _median_us(calls, lambda: run("insert_one", "x" * 64))
    finally:
        await engine.stop()
    return {"ping": ping, "empty": empty, "many": many, "insert": insert}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="samples per row")
    parser.add_argument("--syscalls", type=int, default=200, help="syscalls per measured reducer call")
    options = parser.parse_args()
    if not SERVER_BUNDLE.is_file():
        raise SystemExit("conformance/node_modules is missing (./dev test installs it)")
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "bench_module.mjs"
        path.write_text(MODULE.replace("@SERVER@", SERVER_BUNDLE.as_uri()))
        module = JsModule(path, limits=RunnerLimits(call_timeout_s=30.0))
        try:
            result = asyncio.run(_measure(module, Path(scratch) / "data", options.calls, options.syscalls))
        finally:
            module.close()
    per_syscall = (result["many"] - result["empty"]) / options.syscalls
    print("| crossing | median µs |")
    print("|---|---:|")
    print(f"| frame round trip host->runner->host (ping) | {result['ping']:.1f} |")
    print(f"| empty reducer call through the engine | {result['empty']:.1f} |")
    print(f"| one syscall round trip runner->host->runner | {per_syscall:.1f} |")
    print(f"| reducer making {options.syscalls} syscalls | {result['many']:.1f} |")
    print(f"| reducer inserting one row and logging a line | {result['insert']:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
