"""(h) Fan-in: `fanin_streams` streams each producing `fanin_rate` events/s into one host; p50/p99 commit latency.

Ours only (the goal is "sustained, p99 reported"). The streams share `fanin_connections` producer connections (as
many runtimes would), each stream one call in flight (a stream's events are ordered: the next waits for the
previous acknowledgement), one event per call. Open loop per stream: event k is due at `start + k / rate`; its
latency is from when it was due to its durable `ReducerResult`, so a host that falls behind shows the queueing
(no coordinated omission). Every stream is created before the clock starts. Achieved rate = events acknowledged /
the time until the last acknowledgement; "sustained" when it is within 5% of the offered rate.
"""

from __future__ import annotations

import asyncio
import time

from bench.ours import event_input
from bench.stats import quantile
from bench.suite import OURS, Context, Metric, payload

TITLE = "fan-in: many streams producing at once"


def _label(ctx: Context) -> str:
    sizes = ctx.sizes
    return f"{sizes.fanin_streams:,} streams x {sizes.fanin_rate:g} events/s"


def metrics(ctx: Context) -> list[Metric]:
    label = _label(ctx)
    offered = ctx.sizes.fanin_streams * ctx.sizes.fanin_rate
    return [
        Metric(
            "h",
            f"fan-in {label}: achieved",
            "events/s",
            True,
            f"sustained ({offered:,.0f})",
            lambda m: m["ours"] >= 0.95 * offered,
        ),
        Metric("h", f"fan-in {label}: commit p50", "ms", False),
        Metric("h", f"fan-in {label}: commit p99", "ms", False, "reported"),
    ]


async def measure(ctx: Context, system: str, round_no: int) -> dict[str, float]:
    if system != OURS:
        return {}
    sizes = ctx.sizes
    ours = ctx.ours
    prefix = ctx.name("fan-")
    streams = [f"{prefix}-{i}" for i in range(sizes.fanin_streams)]
    conns = [await ours.connect(producer=True) for _ in range(sizes.fanin_connections)]
    per_stream = int(sizes.fanin_rate * sizes.fanin_seconds)
    latencies: list[float] = []
    try:
        for i, stream in enumerate(streams):  # creates and grants every stream: not timed
            await ours.append(conns[i % len(conns)], [event_input(stream, 1, payload(1))])
        start = time.perf_counter() + 0.5

        async def produce(i: int, stream: str) -> None:
            conn = conns[i % len(conns)]
            offset = (i / len(streams)) / sizes.fanin_rate  # spread the streams over one period
            for k in range(per_stream):
                due = start + offset + k / sizes.fanin_rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                await ours.append(conn, [event_input(stream, k + 2, payload(k + 2))])
                latencies.append(time.perf_counter() - due)

        await asyncio.gather(*(produce(i, stream) for i, stream in enumerate(streams)))
        elapsed = time.perf_counter() - start
    finally:
        await asyncio.gather(*(conn.close() for conn in conns), return_exceptions=True)
    label = _label(ctx)
    return {
        f"fan-in {label}: achieved": len(latencies) / elapsed,
        f"fan-in {label}: commit p50": quantile(latencies, 0.5) * 1000,
        f"fan-in {label}: commit p99": quantile(latencies, 0.99) * 1000,
    }
