"""(a) Durable ordered publish with idempotency keys from one producer, batched and unbatched: events/s.

Ours: `append_sync_events` with `expected_seq`, key `<stream>:<seq>` and the payload hash, 100 events per call
(one call in flight, as the runtime's publisher does) or one per call. NATS: `Nats-Msg-Id` = the same key; batched
= 100 pipelined `publish_async` then every PubAck. Redis: `XADD` with explicit id `0-<seq>`; batched = a
MULTI/EXEC pipeline of 100. Every acknowledgement counted here is durable as each system's durability says.
"""

from __future__ import annotations

import time
from typing import Any

from bench.ours import event_input
from bench.suite import NATS, OURS, Context, Metric, kind_of, payload, payload_bytes

TITLE = "durable ordered publish, one producer"
BATCHED = "batched publish"
UNBATCHED = "unbatched publish"


def metrics(ctx: Context) -> list[Metric]:
    batch = ctx.sizes.batch
    return [
        Metric(
            "a",
            f"{BATCHED} ({batch}/batch)",
            "events/s",
            True,
            "≥ 1.0x redis and nats",
            lambda m: m["ours"] >= m["redis"] and m["ours"] >= m["nats"],
        ),
        Metric(
            "a",
            UNBATCHED,
            "events/s",
            True,
            "≥ 1.0x redis and nats-always",
            lambda m: m["ours"] >= m["redis"] and m["ours"] >= m["nats-always"],
        ),
    ]


async def measure(ctx: Context, system: str, round_no: int) -> dict[str, float]:
    sizes = ctx.sizes
    runner = {OURS: _ours, NATS: _nats}.get(kind_of(system), _redis)
    batched = await runner(ctx, sizes.publish_batched, sizes.batch)
    single = await runner(ctx, sizes.publish_unbatched, 1)
    return {f"{BATCHED} ({sizes.batch}/batch)": batched, UNBATCHED: single}


async def _ours(ctx: Context, count: int, batch: int) -> float:
    stream = ctx.name("pub-")
    conn = await ctx.ours.connect(producer=True)
    try:
        started = time.perf_counter()
        for first in range(1, count + 1, batch):
            events = [event_input(stream, seq, payload(seq)) for seq in range(first, min(count + 1, first + batch))]
            await ctx.ours.append(conn, events)
        return count / (time.perf_counter() - started)
    finally:
        await conn.close()


async def _nats(ctx: Context, count: int, batch: int) -> float:
    from bench.peers.nats_peer import publish, publish_batch

    peer = ctx.peer()
    client, js = await peer.connect()
    stream = ctx.name("PUB")
    subject = await peer.add_stream(js, stream)
    try:
        started = time.perf_counter()
        if batch == 1:
            for seq in range(1, count + 1):
                await publish(js, subject, stream, seq, payload_bytes(seq))
        else:
            for first in range(1, count + 1, batch):
                bodies = [payload_bytes(seq) for seq in range(first, min(count + 1, first + batch))]
                await publish_batch(js, subject, stream, first, bodies)
        elapsed = time.perf_counter() - started
        info = await js.stream_info(stream)
        if info.state.messages != count:
            raise RuntimeError(f"nats stored {info.state.messages} of {count}")
        return count / elapsed
    finally:
        await client.close()


async def _redis(ctx: Context, count: int, batch: int) -> float:
    from bench.peers.redis_peer import entry_id, fields

    client: Any = ctx.peer().client()
    stream = ctx.name("pub-")
    try:
        started = time.perf_counter()
        if batch == 1:
            for seq in range(1, count + 1):
                await client.xadd(stream, fields(stream, seq, payload_bytes(seq)), id=entry_id(seq))
        else:
            for first in range(1, count + 1, batch):
                pipe = client.pipeline(transaction=True)
                for seq in range(first, min(count + 1, first + batch)):
                    pipe.xadd(stream, fields(stream, seq, payload_bytes(seq)), id=entry_id(seq))
                await pipe.execute()
        elapsed = time.perf_counter() - started
        if await client.xlen(stream) != count:
            raise RuntimeError("redis stored a different count")
        return count / elapsed
    finally:
        await client.aclose()
