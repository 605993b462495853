"""(i) Batched publish through the TypeScript sync module, as a ratio to the Python module in the same run (issue 18).

The same workload as row (a) batched: one producer, `append_sync_events` with 100 events per call, one call in
flight, every acknowledgement durable. A second host (the TypeScript twin from `modules/autopilot-sync/`, built with
the project's own toolchain as `autopilot-sync build` does, run in the Node module runner) sits next to the suite's
Python host, both trusting the same kind of control service. Each round measures both hosts back to back, the order
alternating by round, so drift on a shared machine hits both alike; the ratio row is the median of per-round ratios.
Peers have no module, so this workload measures ours only.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench.ours import Ours, event_input
from bench.suite import OURS, Context, Metric, payload

TITLE = "batched publish through the TypeScript sync module (vs the Python module)"
PYTHON = "batched publish, Python module"
TYPESCRIPT = "batched publish, TypeScript module"
RATIO = "TypeScript / Python (batched publish)"
TWIN = Path(__file__).resolve().parents[2] / "modules" / "autopilot-sync"


def metrics(ctx: Context) -> list[Metric]:
    batch = ctx.sizes.batch
    return [
        Metric("i", f"{PYTHON} ({batch}/batch)", "events/s", True),
        Metric("i", f"{TYPESCRIPT} ({batch}/batch)", "events/s", True),
        Metric("i", RATIO, "x", True, "≥ 0.5x", lambda m: m["ours"] >= 0.5),
    ]


async def measure(ctx: Context, system: str, round_no: int) -> dict[str, float]:
    if system != OURS:
        return {}
    twin = await _twin_host(ctx)
    batch, count = ctx.sizes.batch, ctx.sizes.publish_batched
    order = [ctx.ours, twin] if round_no % 2 == 0 else [twin, ctx.ours]
    rates = {id(host): await _publish(ctx, host, count, batch) for host in order}
    python, typescript = rates[id(ctx.ours)], rates[id(twin)]
    return {
        f"{PYTHON} ({batch}/batch)": python,
        f"{TYPESCRIPT} ({batch}/batch)": typescript,
        RATIO: typescript / python,
    }


async def _publish(ctx: Context, host: Ours, count: int, batch: int) -> float:
    stream = ctx.name("ts-")
    conn = await host.connect(producer=True)
    try:
        await host.append(conn, [event_input(stream, 1, payload(1))])  # grant + first call: not measured
        started = time.perf_counter()
        for first in range(2, count + 2, batch):
            events = [event_input(stream, seq, payload(seq)) for seq in range(first, min(count + 2, first + batch))]
            await host.append(conn, events)
        return count / (time.perf_counter() - started)
    finally:
        await conn.close()


async def _twin_host(ctx: Context) -> Ours:
    """The TypeScript host, built and started once per run (its stop is registered with the suite's cleanup)."""
    found = ctx.state.get("typescript_host")
    if isinstance(found, Ours):
        return found
    module = await asyncio.to_thread(_build, ctx.root / "typescript" / "autopilot-sync.js")
    host = Ours(ctx.root / "ours-typescript", module=str(module))
    await asyncio.to_thread(host.start)
    ctx.state.setdefault("cleanup", []).append(host.stop)
    ctx.state["typescript_host"] = host
    warm = await host.connect(producer=True)  # the schema and first token, as for the Python host
    await warm.close()
    return host


def _build(out: Path) -> Path:
    """The twin built as `autopilot-sync build` builds it (`npm ci` in modules/autopilot-sync/ first: ./dev does)."""
    from autopilot_sync.tsbuild.build import build_module
    from autopilot_sync.tsbuild.project import ModuleProject

    return build_module(ModuleProject.open(TWIN), out).out
