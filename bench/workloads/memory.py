"""(e) Memory per idle connection on the server: (RSS after N idle subscribers - RSS before) / N.

Ours: N raw v2 WebSockets (token-authenticated, so each has a row in `active_connection`), each subscribed to its
own stream's resume query and answered (`SubscribeApplied`), then left idle. NATS: N connections with one
subscription each. Redis: N connections each blocked in `XREAD BLOCK 0` on its own stream. RSS from
/proc/<pid>/status one second after the last one settled; ours runs first in the suite, on a host nothing else
has used yet, so freed memory from other workloads does not hide the growth. Only the first round counts: the
memory that round frees stays in the allocators, so a second round on the same server measures almost nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp

from bench.ours import LightSubscriber, resume_query
from bench.peers.common import rss_bytes
from bench.suite import NATS, OURS, Context, Metric, kind_of
from bench.workloads.latency import _open_in_chunks

TITLE = "memory per idle connection"
SETTLE_SECONDS = 1.0


def metrics(ctx: Context) -> list[Metric]:
    n = ctx.sizes.idle_connections
    return [
        Metric("e", f"RSS per idle connection ({n:,})", "KB", False, "≤ 30 KB", lambda m: m["ours"] <= 30),
        Metric("e", f"idle connections still live ({n:,})", "connections", True, "all", lambda m: m["ours"] >= n),
    ]


async def measure(ctx: Context, system: str, round_no: int) -> dict[str, float]:
    if round_no > 0:
        return {}  # later rounds reuse the memory the first round freed: only a fresh server's growth counts
    n = ctx.sizes.idle_connections
    runner = {OURS: _ours, NATS: _nats}.get(kind_of(system), _redis)
    delta, live = await runner(ctx, n)
    return {f"RSS per idle connection ({n:,})": delta / n / 1000, f"idle connections still live ({n:,})": live}


async def _ours(ctx: Context, n: int) -> tuple[float, int]:
    ours = ctx.ours
    await ours.token(False)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    subs: list[LightSubscriber] = []
    try:
        await asyncio.sleep(SETTLE_SECONDS)
        before = rss_bytes(ours.host_pid)
        prefix = ctx.name("idle-")

        async def open_one(i: int) -> LightSubscriber:
            sub = LightSubscriber()
            await sub.open(ours, session, resume_query(f"{prefix}-{i}", 0))
            return sub

        subs = await _open_in_chunks(n, open_one)
        await asyncio.gather(*(sub.answered.wait() for sub in subs))
        await asyncio.sleep(SETTLE_SECONDS)
        return rss_bytes(ours.host_pid) - before, sum(1 for sub in subs if sub.live)
    finally:
        for sub in subs:
            await sub.close()
        await session.close()


async def _nats(ctx: Context, n: int) -> tuple[float, int]:
    peer = ctx.peer()
    clients: list[Any] = []
    try:
        await asyncio.sleep(SETTLE_SECONDS)
        before = rss_bytes(peer.pid)
        prefix = ctx.name("idle")

        async def open_one(i: int) -> None:
            client, _ = await peer.connect()
            clients.append(client)
            await client.subscribe(f"{prefix}.{i}")
            await client.flush()

        await _open_in_chunks(n, open_one)
        await asyncio.sleep(SETTLE_SECONDS)
        return rss_bytes(peer.pid) - before, sum(1 for client in clients if client.is_connected)
    finally:
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)


async def _redis(ctx: Context, n: int) -> tuple[float, int]:
    peer = ctx.peer()
    clients: list[Any] = []
    readers: list[asyncio.Task[Any]] = []

    async def block(client: Any, stream: str) -> None:
        with contextlib.suppress(BaseException):
            await client.xread({stream: "$"}, block=0)

    try:
        await asyncio.sleep(SETTLE_SECONDS)
        before = rss_bytes(peer.pid)
        prefix = ctx.name("idle-")

        async def open_one(i: int) -> None:
            client = peer.client()
            await client.ping()
            clients.append(client)
            readers.append(asyncio.create_task(block(client, f"{prefix}-{i}")))

        await _open_in_chunks(n, open_one)
        await asyncio.sleep(SETTLE_SECONDS)
        return rss_bytes(peer.pid) - before, sum(1 for task in readers if not task.done())
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await asyncio.gather(*(client.aclose() for client in clients), return_exceptions=True)
