"""(h) Fan-in: `fanin_streams` streams each producing `fanin_rate` events/s into one host; p50/p99 commit latency.

Ours only (the goal is "sustained, p99 reported"). The streams share `fanin_connections` producer connections (as
many runtimes would), each stream one call in flight (a stream's events are ordered: the next waits for the
previous acknowledgement). Two producers, each on fresh streams, in one round (their order alternates by round):

- "one event per call": every event its own `append_sync_events` call, the per-call cost laid bare;
- "coalesced as the runtime": what the runtime does: a stream sends every event already due as one batch (at most
  the publisher's batch size), as its drain reads its outbox, and per connection the batches of streams waiting
  while calls are in flight go together as one call (`autopilot_sync.runtime.coalesce.Coalescer`, the same class
  with its default bounds). Its events per call are reported too.

Open loop per stream: event k is due at `start + k / rate`; its latency is from when it was due to its durable
`ReducerResult`, so a host that falls behind shows the queueing (no coordinated omission). The host's CPU per event
over the timed part (`/proc`) says what each producer costs the host, less disturbed by a shared machine; the bench
process's own CPU per event (all producers together) what it costs them. Every stream is created before the clock
starts. Achieved rate = events acknowledged / the time until the last acknowledgement; "sustained" when it is
within 5% of the offered rate.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Sequence

from autopilot_sync.client.connection import Connection
from autopilot_sync.runtime.coalesce import CoalesceLimits, Coalescer
from autopilot_sync.runtime.publisher import PublisherConfig
from autopilot_sync.sync_bindings import AppendSyncEventsBatchItem
from bench.ours import event_input
from bench.proc_cpu import process_cpu_seconds
from bench.stats import quantile
from bench.suite import OURS, Context, Metric, payload

TITLE = "fan-in: many streams producing at once"

#: The two producers: each event its own call, or the runtime's coalescing per connection.
ONE_PER_CALL = "one event per call"
COALESCED = "coalesced as the runtime"
#: A stream's batch in the coalesced producer, as the runtime's drain reads its outbox (`PublisherConfig`).
BATCH_SIZE = PublisherConfig().batch_size


def _label(ctx: Context) -> str:
    sizes = ctx.sizes
    return f"{sizes.fanin_streams:,} streams x {sizes.fanin_rate:g} events/s"


def metrics(ctx: Context) -> list[Metric]:
    label = _label(ctx)
    offered = ctx.sizes.fanin_streams * ctx.sizes.fanin_rate
    found: list[Metric] = []
    for variant in (COALESCED, ONE_PER_CALL):
        found += [
            Metric(
                "h",
                f"fan-in {label}, {variant}: achieved",
                "events/s",
                True,
                f"sustained ({offered:,.0f})" if variant == COALESCED else "reported",
                (lambda m: m["ours"] >= 0.95 * offered) if variant == COALESCED else None,
            ),
            Metric("h", f"fan-in {label}, {variant}: commit p50", "ms", False),
            Metric("h", f"fan-in {label}, {variant}: commit p99", "ms", False, "reported"),
            Metric("h", f"fan-in {label}, {variant}: host CPU per event", "µs", False),
            Metric("h", f"fan-in {label}, {variant}: producers' CPU per event", "µs", False),
        ]
    found.append(Metric("h", f"fan-in {label}, {COALESCED}: events per call", "events", True))
    return found


class _CallCount:
    """The coalescer's calls, counted (its `CallObserver`)."""

    def __init__(self) -> None:
        self.calls = 0
        self.events = 0

    def call_sent(self, events: int, streams: int) -> None:
        self.calls += 1
        self.events += events

    def call_split(self) -> None:
        pass

    def host_behind(self, behind: bool) -> None:
        pass


async def measure(ctx: Context, system: str, round_no: int) -> dict[str, float]:
    if system != OURS:
        return {}
    order = (ONE_PER_CALL, COALESCED) if round_no % 2 == 0 else (COALESCED, ONE_PER_CALL)
    found: dict[str, float] = {}
    for variant in order:
        found.update(await _measure(ctx, variant))
    return found


async def _measure(ctx: Context, variant: str, limits: CoalesceLimits | None = None) -> dict[str, float]:
    """One producer's run on fresh streams; `limits` the coalesced producer's bounds (None: the runtime's defaults,
    `bench.fanin_ab` compares others)."""
    sizes = ctx.sizes
    ours = ctx.ours
    prefix = ctx.name("fan-c-" if variant == COALESCED else "fan-")
    streams = [f"{prefix}-{i}" for i in range(sizes.fanin_streams)]
    conns = [await ours.connect(producer=True) for _ in range(sizes.fanin_connections)]
    per_stream = int(sizes.fanin_rate * sizes.fanin_seconds)
    latencies: list[float] = []
    counted = _CallCount()
    senders: list[Callable[[list[AppendSyncEventsBatchItem]], Awaitable[None]]]
    if variant == COALESCED:
        senders = [Coalescer(_sender(ctx, conn), limits, counted).append for conn in conns]
    else:
        senders = [functools.partial(ours.append, conn) for conn in conns]
    try:
        for i, stream in enumerate(streams):  # creates and grants every stream: not timed
            await ours.append(conns[i % len(conns)], [event_input(stream, 1, payload(1))])
        start = time.perf_counter() + 0.5
        host_cpu, own_cpu = process_cpu_seconds(ours.host_pid), time.process_time()

        async def produce(i: int, stream: str) -> None:
            send = senders[i % len(senders)]
            offset = (i / len(streams)) / sizes.fanin_rate  # spread the streams over one period
            k = 0
            while k < per_stream:
                due = start + offset + k / sizes.fanin_rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                count = 1
                if variant == COALESCED:  # as the runtime's drain: every event already due, one batch
                    behind = int((time.perf_counter() - start - offset) * sizes.fanin_rate) + 1 - k
                    count = max(1, min(per_stream - k, behind, BATCH_SIZE))
                await send([event_input(stream, k + 2 + j, payload(k + 2 + j)) for j in range(count)])
                done = time.perf_counter()
                latencies.extend(done - (start + offset + (k + j) / sizes.fanin_rate) for j in range(count))
                k += count

        await asyncio.gather(*(produce(i, stream) for i, stream in enumerate(streams)))
        elapsed = time.perf_counter() - start
        host_cpu, own_cpu = process_cpu_seconds(ours.host_pid) - host_cpu, time.process_time() - own_cpu
    finally:
        await asyncio.gather(*(conn.close() for conn in conns), return_exceptions=True)
    label = _label(ctx)
    found = {
        f"fan-in {label}, {variant}: achieved": len(latencies) / elapsed,
        f"fan-in {label}, {variant}: commit p50": quantile(latencies, 0.5) * 1000,
        f"fan-in {label}, {variant}: commit p99": quantile(latencies, 0.99) * 1000,
        f"fan-in {label}, {variant}: host CPU per event": host_cpu / max(1, len(latencies)) * 1e6,
        f"fan-in {label}, {variant}: producers' CPU per event": own_cpu / max(1, len(latencies)) * 1e6,
    }
    if variant == COALESCED:
        found[f"fan-in {label}, {COALESCED}: events per call"] = counted.events / max(1, counted.calls)
    return found


def _sender(ctx: Context, conn: Connection) -> Callable[[Sequence[AppendSyncEventsBatchItem]], Awaitable[None]]:
    """One call on `conn` with whatever the coalescer joined (raises unless it committed)."""

    async def send(events: Sequence[AppendSyncEventsBatchItem]) -> None:
        await ctx.ours.append(conn, list(events))

    return send
