"""TypeScript-module cost: what one crossing into the Node module runner costs, through the engine (issue 18, ADR 0003).

Usage: `.venv/bin/python -m bench.jsmodule_bench [--calls 2000] [--syscalls 200]`

Hosts a tiny module built on the pinned `spacetimedb/server` bundle (from `conformance/node_modules`) as a `JsModule`
in a real `HostEngine` (commit log in a scratch directory, fsync off: the crossing is measured, not the disk).
Prints a Markdown table of medians:
- a bare frame round trip host -> runner -> host (`ping`, no JavaScript of the module runs);
- an empty reducer call through the engine (a transaction, `__call_reducer__`, no syscalls);
- one syscall round trip runner -> host -> runner, measured inside a reducer that makes N
  `ctx.db.bench_row.count()` calls (one `datastore_table_row_count` each), minus the empty call, divided by N;
- a reducer that inserts one row and logs a line (one syscall: ids are cached in the runner, the log is one-way).
Then the sync module's TypeScript twin (`modules/autopilot-sync/`, built as `autopilot-sync build` does) and the
Python sync module, each in its own engine: the median `append_sync_events` call of `--batch` events (the workload
of `python -m bench` row i, without the network and the fsync), and the twin's syscalls per event by name, as
counted by `JsModule.syscall_counts` (every frame the runner sent the host), and how many of them were answered (round
trips: `JsModuleRunner.round_trips`; one-way inserts are not).
`--variant spin=0,slice=off --variant spin=200 --rounds N` compares runner settings (`RunnerLimits.spin_us`,
`RunnerLimits.short_slice`) interleaved in one run, the order flipped every round (`bench.ab.interleaved`, medians
by `bench.ab.Samples`).
Numbers depend on the machine's load; they are a cost row, never a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from autopilot_sync.bindings.module import Module
from autopilot_sync.contract.canonical import hash_value
from autopilot_sync.host.call_outcome import CallStatus
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.host.hosted_module import HostedModule
from autopilot_sync.host.js_module import JsModule
from autopilot_sync.jsmodule.runner import SPIN_US, RunnerLimits
from autopilot_sync.module import module as python_sync_module
from autopilot_sync.spacetime.values import ConnectionId, Identity, Timestamp
from autopilot_sync.sync_bindings import AppendSyncEventsBatchItem
from bench.ab import Samples, interleaved

ROOT = Path(__file__).resolve().parents[1]
SERVER_BUNDLE = ROOT / "conformance" / "node_modules" / "spacetimedb" / "dist" / "server" / "index.mjs"
TWIN = ROOT / "modules" / "autopilot-sync"
#: The issuer of the publisher's claims, named trusted on each engine (the sync module fails closed until then).
ISSUER = "https://control.bench"
PUBLISHER = Caller(
    Identity(1), ConnectionId(1), {"iss": ISSUER, "sub": "11" * 32, "scopes": ["sync.append", "sync.subscribe"]}
)

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


def _batch(stream: str, first: int, size: int) -> list[AppendSyncEventsBatchItem]:
    """`size` events for `stream` from seq `first`: the ~250-byte payload of `python -m bench`."""
    items = []
    for seq in range(first, first + size):
        text, digest = hash_value({"n": seq, "pad": "x" * 200, "t": 0})
        at = Timestamp(time.time_ns() // 1000)
        items.append(AppendSyncEventsBatchItem(stream, f"{stream}:{seq}", "bench.event", text, digest, seq, at))
    return items


async def _sync_append(sync_module: Module | HostedModule, data_dir: Path, calls: int, batch: int) -> float:
    """Median µs of one `append_sync_events` call of `batch` events through a real engine (fsync off)."""
    engine = HostEngine(sync_module, data_dir, "bench", EngineConfig(fsync=False, snapshot_every=10**9))
    await engine.start()
    named = await engine.call_reducer("set_trusted_issuer", (ISSUER,), Caller(engine.owner_identity))
    assert named.status is CallStatus.COMMITTED, named.message
    seq = {"warm": 1, "s": 1}

    async def append(stream: str) -> None:
        outcome = await engine.call_reducer("append_sync_events", (_batch(stream, seq[stream], batch),), PUBLISHER)
        if outcome.status is not CallStatus.COMMITTED:
            raise SystemExit(f"append_sync_events failed: {outcome.message}")
        seq[stream] += batch

    try:
        for _ in range(20):
            await append("warm")
        if isinstance(sync_module, JsModule):
            sync_module.syscall_counts.clear()
            sync_module.runner.round_trips = 0
        times = []
        for _ in range(calls):
            started = time.perf_counter_ns()
            await append("s")
            times.append(time.perf_counter_ns() - started)
    finally:
        await engine.stop()
    return statistics.median(times) / 1000


#: the runner's answered syscalls (round trips) among the twin's counts; the others went one way
ROUND_TRIPS = "(round trips)"


def _limits(variant: str) -> RunnerLimits:
    """`spin=N,slice=on|off` (either may be left out: the defaults) as the runner's limits."""
    fields = dict(part.split("=", 1) for part in variant.split(",") if part)
    return RunnerLimits(
        call_timeout_s=30.0,
        spin_us=int(fields.get("spin", SPIN_US)),
        short_slice=fields.get("slice", "on") == "on",
    )


def _twin_us(built: Path, scratch: Path, calls: int, batch: int, variant: str) -> tuple[float, dict[str, int]]:
    """Median µs per `append_sync_events` call through the twin, and its syscalls by name."""
    twin = JsModule(built, limits=_limits(variant))
    try:
        us = asyncio.run(_sync_append(twin, scratch, calls, batch))
        return us, {**twin.syscall_counts, ROUND_TRIPS: twin.runner.round_trips}
    finally:
        twin.close()


def _crossing(scratch: Path, options: argparse.Namespace, variant: str) -> dict[str, float]:
    scratch.mkdir(parents=True)
    path = scratch / "bench_module.mjs"
    path.write_text(MODULE.replace("@SERVER@", SERVER_BUNDLE.as_uri()))
    module = JsModule(path, limits=_limits(variant))
    try:
        result = asyncio.run(_measure(module, scratch / "data", options.calls, options.syscalls))
    finally:
        module.close()
    result["syscall"] = (result["many"] - result["empty"]) / options.syscalls
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="samples per row")
    parser.add_argument("--syscalls", type=int, default=200, help="syscalls per measured reducer call")
    parser.add_argument("--appends", type=int, default=100, help="append_sync_events calls per sync module")
    parser.add_argument("--batch", type=int, default=100, help="events per append_sync_events call")
    parser.add_argument(
        "--variant",
        action="append",
        help="runner settings, e.g. spin=200,slice=off; repeat to compare variants interleaved (default: defaults)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="rounds; variants alternate their order by round")
    options = parser.parse_args()
    if not SERVER_BUNDLE.is_file():
        raise SystemExit("conformance/node_modules is missing (./dev test installs it)")
    from autopilot_sync.tsbuild.build import build_module
    from autopilot_sync.tsbuild.project import BuildError, ModuleProject

    variants: list[str] = options.variant or [""]
    samples = Samples()
    python: list[float] = []
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        try:
            built: Path | None = build_module(ModuleProject.open(TWIN), scratch / "autopilot-sync.js").out
        except BuildError as exc:
            print(f"(twin not built: {exc})")
            built = None
        for run, (round_no, variant) in enumerate(interleaved(variants, options.rounds)):
            if built is not None and len(python) == round_no:  # the Python module once per round, first
                python.append(
                    asyncio.run(
                        _sync_append(python_sync_module, scratch / f"py{round_no}", options.appends, options.batch)
                    )
                )
            row = _crossing(scratch / f"x{run}", options, variant)
            if built is not None:
                row["twin"], counts = _twin_us(built, scratch / f"ts{run}", options.appends, options.batch, variant)
            samples.add(variant, row)
    medians = samples.medians()

    print(f"medians of {options.rounds} round(s), variants interleaved; load average {_load()}")
    print("")
    print("| crossing, median µs | " + " | ".join(variant or "defaults" for variant in variants) + " |")
    print("|---|" + "---:|" * len(variants))
    rows = [
        ("frame round trip host->runner->host (ping)", "ping"),
        ("empty reducer call through the engine", "empty"),
        ("one syscall round trip runner->host->runner", "syscall"),
        (f"reducer making {options.syscalls} syscalls", "many"),
        ("reducer inserting one row and logging a line", "insert"),
    ]
    for label, key in rows:
        print(f"| {label} | " + " | ".join(f"{medians[variant][key]:.1f}" for variant in variants) + " |")
    if built is None:
        return 0
    batch = options.batch
    py_us = statistics.median(python)
    print("")
    print(f"| append_sync_events, {batch} events per call | median µs per call | µs per event | vs Python |")
    print("|---|---:|---:|---:|")
    print(f"| Python sync module | {py_us:.0f} | {py_us / batch:.1f} | |")
    for variant in variants:
        ts_us = medians[variant]["twin"]
        print(
            f"| TypeScript twin, {variant or 'defaults'} | {ts_us:.0f} | {ts_us / batch:.1f} | {py_us / ts_us:.2f}x |"
        )
    events = options.appends * batch
    round_trips = counts.pop(ROUND_TRIPS, 0)
    total = sum(counts.values())
    print("")
    print(f"| twin syscall ({total / events:.1f} per event, {round_trips / events:.2f} answered) | per event | share |")
    print("|---|---:|---:|")
    for name, count in sorted(counts.items(), key=lambda item: -item[1]):
        print(f"| {name} | {count / events:.2f} | {count / total:.0%} |")
    return 0


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    raise SystemExit(main())
