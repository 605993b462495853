"""(c) Resume: a subscriber 10,000 events behind catches up: seconds and events/s.

The stream already holds `resume_events` events (appended in batches, not timed). Timed: from the resume request
on an open connection to the last of the 10,000 events in the client's hands. Ours: subscribe `seq > 0` and wait
for `SubscribeApplied` (the rows land in the SDK cache). NATS: a durable pull consumer starting at sequence 1,
fetching 1,000 at a time, acking the last of each batch (AckAll). Redis: `XREAD COUNT 1000` from the last id.
"""

from __future__ import annotations

import time
from typing import Any

from bench.ours import resume_query
from bench.suite import NATS, OURS, Context, Metric, kind_of, payload, payload_bytes

TITLE = "resume 10,000 events behind"
FETCH = 1000


def metrics(ctx: Context) -> list[Metric]:
    return [
        Metric("c", "catch-up rate", "events/s", True, "≥ 100,000 events/s", lambda m: m["ours"] >= 100_000),
        Metric("c", f"catch-up time ({ctx.sizes.resume_events:,} events)", "s", False),
    ]


async def measure(ctx: Context, system: str, round_no: int) -> dict[str, float]:
    count = ctx.sizes.resume_events
    runner = {OURS: _ours, NATS: _nats}.get(kind_of(system), _redis)
    seconds = await runner(ctx, count)
    return {"catch-up rate": count / seconds, f"catch-up time ({count:,} events)": seconds}


async def _ours(ctx: Context, count: int) -> float:
    stream = ctx.name("res-")
    await ctx.ours.fill(stream, count, payload(0))
    conn = await ctx.ours.connect()
    try:
        started = time.perf_counter()
        query_set = await conn.subscribe([resume_query(stream, 0)])
        await query_set.applied()
        elapsed = time.perf_counter() - started
        if conn.cache.count("sync_event") != count:
            raise RuntimeError(f"resumed {conn.cache.count('sync_event')} of {count}")
        return elapsed
    finally:
        await conn.close()


async def _nats(ctx: Context, count: int) -> float:
    from nats.js.api import AckPolicy

    from bench.peers.nats_peer import from_seq, publish_batch

    peer = ctx.peer()
    client, js = await peer.connect()
    stream = ctx.name("RES")
    try:
        subject = await peer.add_stream(js, stream)
        for first in range(1, count + 1, FETCH):
            await publish_batch(js, subject, stream, first, [payload_bytes(0)] * min(FETCH, count + 1 - first))
        config = from_seq(1)
        config.ack_policy = AckPolicy.ALL
        started = time.perf_counter()
        sub = await js.pull_subscribe(subject, durable=f"{stream}-reader", stream=stream, config=config)
        got = 0
        while got < count:
            batch = await sub.fetch(FETCH, timeout=10)
            got += len(batch)
            await batch[-1].ack()
        return time.perf_counter() - started
    finally:
        await client.close()


async def _redis(ctx: Context, count: int) -> float:
    from bench.peers.redis_peer import entry_id, fields

    client: Any = ctx.peer().client()
    stream = ctx.name("res-")
    try:
        for first in range(1, count + 1, FETCH):
            pipe = client.pipeline(transaction=False)
            for seq in range(first, min(count + 1, first + FETCH)):
                pipe.xadd(stream, fields(stream, seq, payload_bytes(0)), id=entry_id(seq))
            await pipe.execute()
        started = time.perf_counter()
        last, got = "0-0", 0
        while got < count:
            for _, entries in await client.xread({stream: last}, count=FETCH):
                got += len(entries)
                last = entries[-1][0]
        return time.perf_counter() - started
    finally:
        await client.aclose()
