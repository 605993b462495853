"""(b) Publish → subscriber receipt latency p50/p99/p99.9 at a fixed offered rate, with 1, 100 and 1,000 subscribers.

One producer publishes one event per call at `latency_rate` events/s, open loop (sends never wait for the previous
acknowledgement, so a slow system queues instead of slowing the producer). Each payload carries its send time
(`time.time_ns()`). Up to `latency_probes` subscribers are full clients that decode every event and record
receipt - send; the rest are load-only subscribers that read and count frames without decoding, so 1,000 fit
in the benchmark process. Every subscriber has its own connection. Ours: SDK probes subscribed to the resume
query; load = raw v2 WebSockets with the same query. NATS: JetStream push consumers (deliver new) per connection.
Redis: `XREAD BLOCK` loops, one connection each.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiohttp

from bench.ours import LightSubscriber, event_input, resume_query
from bench.stats import quantile
from bench.suite import NATS, OURS, Context, Metric, kind_of, payload, payload_bytes

TITLE = "publish → receipt latency at a fixed rate"
OPEN_CHUNK = 50
DRAIN_SECONDS = 30.0


def metrics(ctx: Context) -> list[Metric]:
    found = []
    for subs in ctx.sizes.latency_subscribers:
        for label, _ in (("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)):
            goal, check = "", None
            if subs == 1 and label == "p50":
                goal = "≤ 1.5x nats"

                def check(m: dict[str, float]) -> bool:
                    return m["ours"] <= 1.5 * m["nats"]

            elif subs >= 100 and label == "p99":
                goal = "ahead of nats"

                def check(m: dict[str, float]) -> bool:
                    return m["ours"] <= m["nats"]

            found.append(Metric("b", f"latency {label}, {subs} subscribers", "ms", False, goal, check))
    return found


async def measure(ctx: Context, system: str, round_no: int) -> dict[str, float]:
    found: dict[str, float] = {}
    for subs in ctx.sizes.latency_subscribers:
        runner = {OURS: _ours, NATS: _nats}.get(kind_of(system), _redis)
        samples = await runner(ctx, subs)
        for label, fraction in (("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)):
            found[f"latency {label}, {subs} subscribers"] = quantile(samples, fraction) * 1000
    return found


class Recorder:
    """Latency samples of the probes and a way to wait until every probe has seen every event."""

    def __init__(self, probes: int, events: int) -> None:
        self.samples: list[float] = []
        self.expected = probes * events
        self.done = asyncio.Event()
        if self.expected == 0:
            self.done.set()

    def record(self, body: bytes | str) -> None:
        sent = json.loads(body)["t"]
        self.samples.append((time.time_ns() - sent) / 1e9)
        if len(self.samples) >= self.expected:
            self.done.set()


async def _open_in_chunks(count: int, opener: Callable[[int], Awaitable[Any]]) -> list[Any]:
    opened: list[Any] = []
    for start in range(0, count, OPEN_CHUNK):
        opened += await asyncio.gather(*(opener(i) for i in range(start, min(count, start + OPEN_CHUNK))))
    return opened


async def _offer(ctx: Context, send: Callable[[int], Coroutine[Any, Any, None]]) -> int:
    """Open-loop sends at the fixed rate; returns the number sent once every send was acknowledged."""
    sizes = ctx.sizes
    events = int(sizes.latency_rate * sizes.latency_seconds)
    started = time.perf_counter()
    tasks: list[asyncio.Task[None]] = []
    for seq in range(1, events + 1):
        await asyncio.sleep(max(0.0, started + (seq - 1) / sizes.latency_rate - time.perf_counter()))
        tasks.append(asyncio.create_task(send(seq)))
    await asyncio.gather(*tasks)
    return events


def _events(ctx: Context) -> int:
    return int(ctx.sizes.latency_rate * ctx.sizes.latency_seconds)


async def _wait(recorder: Recorder) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(recorder.done.wait(), DRAIN_SECONDS)


async def _ours(ctx: Context, subs: int) -> list[float]:
    ours = ctx.ours
    stream = ctx.name("lat-")
    query = resume_query(stream, 0)
    probes = min(subs, ctx.sizes.latency_probes)
    recorder = Recorder(probes, _events(ctx))
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    conns: list[Any] = []
    light: list[LightSubscriber] = []
    try:
        for _ in range(probes):
            conn = await ours.connect()
            conns.append(conn)
            conn.cache.on_insert("sync_event", lambda row: recorder.record(row[4]))
            await (await conn.subscribe([query])).applied()

        async def open_light(_: int) -> LightSubscriber:
            sub = LightSubscriber()
            await sub.open(ours, session, query)
            return sub

        light = await _open_in_chunks(subs - probes, open_light)
        producer = await ours.connect(producer=True)
        conns.append(producer)

        async def send(seq: int) -> None:
            await ours.append(producer, [event_input(stream, seq, payload(seq, time.time_ns()))])

        await _offer(ctx, send)
        await _wait(recorder)
        return recorder.samples
    finally:
        for sub in light:
            await sub.close()
        for conn in conns:
            await conn.close()
        await session.close()


async def _nats(ctx: Context, subs: int) -> list[float]:
    from bench.peers.nats_peer import publish

    peer = ctx.peer()
    stream = ctx.name("LAT")
    probes = min(subs, ctx.sizes.latency_probes)
    recorder = Recorder(probes, _events(ctx))
    clients: list[Any] = []
    try:
        producer, js = await peer.connect()
        clients.append(producer)
        subject = await peer.add_stream(js, stream)

        async def open_sub(i: int) -> None:
            client, sub_js = await peer.connect()
            clients.append(client)
            if i < probes:

                async def on_msg(msg: Any) -> None:
                    recorder.record(msg.data)

            else:

                async def on_msg(msg: Any) -> None:
                    return None

            from nats.js.api import DeliverPolicy

            await sub_js.subscribe(subject, cb=on_msg, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW)

        await _open_in_chunks(subs, open_sub)

        async def send(seq: int) -> None:
            await publish(js, subject, stream, seq, payload_bytes(seq, time.time_ns()))

        await _offer(ctx, send)
        await _wait(recorder)
        return recorder.samples
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()


async def _redis(ctx: Context, subs: int) -> list[float]:
    from bench.peers.redis_peer import entry_id, fields

    peer = ctx.peer()
    stream = ctx.name("lat-")
    probes = min(subs, ctx.sizes.latency_probes)
    recorder = Recorder(probes, _events(ctx))
    readers: list[asyncio.Task[None]] = []
    clients: list[Any] = []

    async def read(client: Any, probe: bool, ready: asyncio.Event) -> None:
        last = "0-0"
        ready.set()
        with contextlib.suppress(BaseException):  # ends by cancellation or by the client closing
            while True:
                answer = await client.xread({stream: last}, block=0, count=1000)
                for _, entries in answer:
                    for entry_id_, values in entries:
                        last = entry_id_
                        if probe:
                            recorder.record(values[b"payload"])

    try:

        async def open_sub(i: int) -> None:
            client = peer.client()
            await client.ping()
            clients.append(client)
            ready = asyncio.Event()
            readers.append(asyncio.create_task(read(client, i < probes, ready)))
            await ready.wait()

        await _open_in_chunks(subs, open_sub)
        await asyncio.sleep(0.05)  # let every XREAD reach the server before the first event
        producer = peer.client()
        clients.append(producer)

        async def send(seq: int) -> None:
            await producer.xadd(stream, fields(stream, seq, payload_bytes(seq, time.time_ns())), id=entry_id(seq))

        await _offer(ctx, send)
        await _wait(recorder)
        return recorder.samples
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for client in clients:
            with contextlib.suppress(Exception):
                await client.aclose()
