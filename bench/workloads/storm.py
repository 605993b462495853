"""(d) Reconnect storm: N clients reconnect at once and resume 10 events behind: seconds until all are live.

The stream holds 100 events. At t0 every client opens a new connection and resumes from seq 90; a client is live
once it holds events 91-100. Ours: the SDK's `connect` (token exchange + WebSocket + `InitialConnection`) then the
resume subscription until `SubscribeApplied`. NATS: connect, then an ordered push consumer from sequence 91.
Redis: connect, then `XREAD` from `0-90`. Each client has its own connection; all run in the benchmark process.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.ours import resume_query
from bench.suite import NATS, OURS, Context, Metric, kind_of, payload, payload_bytes

TITLE = "reconnect storm"
HELD = 100
BEHIND = 10
#: Seconds a storm client waits from its 101 to `InitialConnection` (the SDK's default is 10 s): at load 10-12 on the
#: shared 2-core machine some of 2,000 clients waited longer, and the NATS side waits up to 60 s for its messages.
HANDSHAKE_TIMEOUT = 60.0


def metrics(ctx: Context) -> list[Metric]:
    found = []
    for n in ctx.sizes.storm_clients:
        found += [
            Metric("d", f"storm: {n} clients live", "s", False),
            Metric(
                "d",
                f"storm: reconnects per second ({n})",
                "clients/s",
                True,
                "≥ 1.0x nats",
                lambda m: m["ours"] >= m["nats"],
            ),
        ]
    return found


async def measure(ctx: Context, system: str, round_no: int) -> dict[str, float]:
    found: dict[str, float] = {}
    runner = {OURS: _ours, NATS: _nats}.get(kind_of(system), _redis)
    for n in ctx.sizes.storm_clients:
        seconds = await runner(ctx, n)
        found |= {f"storm: {n} clients live": seconds, f"storm: reconnects per second ({n})": n / seconds}
    return found


async def _ours(ctx: Context, n: int) -> float:
    stream = ctx.name("storm-")
    await ctx.ours.fill(stream, HELD, payload(0))
    await ctx.ours.token(False)  # the desktop holds its session token already when it reconnects
    conns: list[Any] = []

    async def one() -> None:
        conn = await ctx.ours.connect(handshake_timeout=HANDSHAKE_TIMEOUT)
        conns.append(conn)
        await (await conn.subscribe([resume_query(stream, HELD - BEHIND)])).applied()
        if conn.cache.count("sync_event") != BEHIND:
            raise RuntimeError("resume returned the wrong rows")

    try:
        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return time.perf_counter() - started
    finally:
        await asyncio.gather(*(conn.close() for conn in conns), return_exceptions=True)


async def _nats(ctx: Context, n: int) -> float:
    from bench.peers.nats_peer import from_seq, publish_batch

    peer = ctx.peer()
    client, js = await peer.connect()
    stream = ctx.name("STORM")
    subject = await peer.add_stream(js, stream)
    await publish_batch(js, subject, stream, 1, [payload_bytes(0)] * HELD)
    await client.close()
    clients: list[Any] = []

    async def one() -> None:
        conn, conn_js = await peer.connect()
        clients.append(conn)
        got = asyncio.Event()
        seen = 0

        async def on_msg(msg: Any) -> None:
            nonlocal seen
            seen += 1
            if seen >= BEHIND:
                got.set()

        await conn_js.subscribe(subject, cb=on_msg, ordered_consumer=True, config=from_seq(HELD - BEHIND + 1))
        await asyncio.wait_for(got.wait(), 60)

    try:
        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return time.perf_counter() - started
    finally:
        await asyncio.gather(*(conn.close() for conn in clients), return_exceptions=True)


async def _redis(ctx: Context, n: int) -> float:
    from bench.peers.redis_peer import entry_id, fields

    peer = ctx.peer()
    stream = ctx.name("storm-")
    setup: Any = peer.client()
    pipe = setup.pipeline(transaction=False)
    for seq in range(1, HELD + 1):
        pipe.xadd(stream, fields(stream, seq, payload_bytes(0)), id=entry_id(seq))
    await pipe.execute()
    await setup.aclose()
    clients: list[Any] = []

    async def one() -> None:
        client = peer.client()
        clients.append(client)
        answer = await client.xread({stream: entry_id(HELD - BEHIND)}, count=1000)
        if len(answer[0][1]) != BEHIND:
            raise RuntimeError("resume returned the wrong entries")

    try:
        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return time.perf_counter() - started
    finally:
        await asyncio.gather(*(client.aclose() for client in clients), return_exceptions=True)
