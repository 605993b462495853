"""TypeScript-module spike cost: what one crossing into the Node module runner costs (issue 18, ADR 0002).

Usage: `.venv/bin/python bench/jsmodule_bench.py [--calls 2000] [--syscalls 200]`

Starts one `JsModuleRunner` on a tiny module built on the pinned `spacetimedb/server` bundle (from
`conformance/node_modules`), answered by the spike double. Prints a Markdown table of medians:
- a bare frame round trip host -> runner -> host (`ping`, no JavaScript of the module runs);
- an empty reducer call (`__call_reducer__` with no syscalls: frame + library dispatch);
- one syscall round trip runner -> host -> runner, measured inside a reducer that makes N
  `ctx.db.bench_row.count()` calls (one `datastore_table_row_count` each), minus the empty call, divided by N.
Numbers depend on the machine's load; they are a cost row, never a test.
"""

from __future__ import annotations

import argparse
import statistics
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from autopilot_sync.jsmodule import JsModuleRunner, SpikeTableDouble
from autopilot_sync.jsmodule.runner import RunnerLimits

ROOT = Path(__file__).resolve().parents[1]
SERVER_BUNDLE = ROOT / "conformance" / "node_modules" / "spacetimedb" / "dist" / "server" / "index.mjs"

MODULE = """
import { schema, table, t } from '@SERVER@';
const bench_row = table({ name: 'bench_row' }, { id: t.u32() });
const spacetimedb = schema({ bench_row });
export default spacetimedb;
export const empty = spacetimedb.reducer((_ctx) => {});
export const count_many = spacetimedb.reducer({ n: t.u32() }, (ctx, { n }) => {
  for (let i = 0; i < n; i++) ctx.db.bench_row.count();
});
"""


def _median_us(samples: int, action: Callable[[], None]) -> float:
    times = []
    for _ in range(samples):
        started = time.perf_counter_ns()
        action()
        times.append(time.perf_counter_ns() - started)
    return statistics.median(times) / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="samples per row")
    parser.add_argument("--syscalls", type=int, default=200, help="syscalls per measured reducer call")
    options = parser.parse_args()
    if not SERVER_BUNDLE.is_file():
        raise SystemExit("conformance/node_modules is missing (./dev test installs it)")
    with tempfile.TemporaryDirectory() as scratch:
        module = Path(scratch) / "bench_module.mjs"
        module.write_text(MODULE.replace("@SERVER@", SERVER_BUNDLE.as_uri()))
        tables = SpikeTableDouble(["bench_row"])
        with JsModuleRunner(module, tables, limits=RunnerLimits(call_timeout_s=30.0)) as runner:
            description = runner.describe()
            ids = {
                name: description.index(struct.pack("<I", len(name)) + name.encode())
                for name in ("empty", "count_many")
            }
            empty_id, many_id = (sorted(ids, key=ids.__getitem__).index(name) for name in ("empty", "count_many"))
            many_args = struct.pack("<I", options.syscalls)
            for _ in range(200):  # warm up the JIT and the pipes
                runner.call_reducer(empty_id, b"")
                runner.call_reducer(many_id, many_args)
            ping = _median_us(options.calls, runner.ping)
            empty = _median_us(options.calls, lambda: runner.call_reducer(empty_id, b""))
            many = _median_us(max(1, options.calls // 10), lambda: runner.call_reducer(many_id, many_args))
    per_syscall = (many - empty) / options.syscalls
    print("| crossing | median µs |")
    print("|---|---:|")
    print(f"| frame round trip host->runner->host (ping) | {ping:.1f} |")
    print(f"| empty reducer call | {empty:.1f} |")
    print(f"| one syscall round trip runner->host->runner | {per_syscall:.1f} |")
    print(f"| reducer making {options.syscalls} syscalls | {many:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
