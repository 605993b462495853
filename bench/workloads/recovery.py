"""(f) Host recovery time per 100k commits: start on a data directory holding N commits, time until ready.

Each system gets a dedicated server whose store holds N single-event commits on one stream, built as fast as
possible (ours with `AUTOPILOT_SYNC_HOST_FSYNC=false` and 256 calls in flight; peers pipelined), then SIGKILLed
and restarted with its normal durability settings. Ready = ours: the host's `ready` line (the log is replayed and
the socket accepts); NATS: `stream_info` reports N messages; Redis: `XLEN` answers N (not `LOADING`). The same
restart on an empty store is measured too, and the reported time per 100k commits is (time with N - time empty)
scaled to 100k; `ready with N commits` is the raw time including process start. Ours has its snapshot
interval off for this workload, so all N commits are replayed from the commit log: the worst case (with the
default interval of 10,000 a start loads the newest snapshot and replays at most 10,000 commits).
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from typing import Any

from autopilot_sync.devtools.processes import ServiceProcess, free_port
from bench.ours import event_input
from bench.suite import NATS, OURS, Context, Metric, kind_of, payload, payload_bytes

TITLE = "recovery per 100k commits"
WINDOW = 256
CHUNK = 1000
#: Every commit is replayed from the log (the worst case); with the default snapshot interval (10,000) a start
#: loads the newest snapshot and replays at most that many commits.
NO_SNAPSHOTS = {"AUTOPILOT_SYNC_HOST_SNAPSHOT_EVERY_COMMITS": str(10**9)}


def metrics(ctx: Context) -> list[Metric]:
    n = ctx.sizes.recovery_commits
    return [
        Metric("f", "recovery per 100k commits", "s", False),
        Metric("f", f"ready with {n:,} commits", "s", False),
        Metric("f", "ready, empty store", "s", False, "≤ 0.3 s", lambda m: m["ours"] <= 0.3),
    ]


async def measure(ctx: Context, system: str, round_no: int) -> dict[str, float]:
    n = ctx.sizes.recovery_commits
    runner = {OURS: _ours, NATS: _nats}.get(kind_of(system), _redis)
    empty, full = await runner(ctx, n, round_no)
    return {
        "recovery per 100k commits": max(0.0, full - empty) * 100_000 / n,
        f"ready with {n:,} commits": full,
        "ready, empty store": empty,
    }


def _cleanup(ctx: Context, stop: Any) -> None:
    ctx.state.setdefault("cleanup", []).append(stop)


async def _ours(ctx: Context, n: int, round_no: int) -> tuple[float, float]:
    ours = ctx.ours
    key = "recovery-ours"
    if key not in ctx.state:
        data_dir = ctx.root / "recovery-ours"
        port = free_port()
        started = time.perf_counter()
        host = ours.spawn_host(data_dir, port, {"AUTOPILOT_SYNC_HOST_FSYNC": "false", **NO_SNAPSHOTS})
        ctx.state[key + "-empty"] = time.perf_counter() - started  # first start: an empty store
        url = f"http://127.0.0.1:{port}"
        await asyncio.to_thread(ours.trust, url)
        conn = await ours.connect(producer=True, url=url)
        stream = "recovery"
        in_flight: set[asyncio.Task[None]] = set()
        for seq in range(1, n + 1):
            if len(in_flight) >= WINDOW:
                _, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            in_flight.add(asyncio.create_task(ours.append(conn, [event_input(stream, seq, payload(seq))])))
        await asyncio.gather(*in_flight)
        await conn.close()
        host.kill()
        ctx.state[key] = (data_dir, port)
    data_dir, port = ctx.state[key]
    started = time.perf_counter()
    host = ours.spawn_host(data_dir, port, NO_SNAPSHOTS)
    full = time.perf_counter() - started
    ready_line = next((line for line in host.output if " ready: " in line), "")
    host.kill()
    offset = re.search(r"offset=(\d+)", ready_line)
    if offset is None or int(offset.group(1)) < n:
        print(f"  ! recovery: host ready line does not show {n} commits: {ready_line}", file=sys.stderr)
    if round_no == 0:
        return ctx.state[key + "-empty"], full
    empty_dir = ctx.root / f"recovery-ours-empty-{round_no}"
    started = time.perf_counter()
    empty_host: ServiceProcess = ours.spawn_host(empty_dir, free_port())
    empty = time.perf_counter() - started
    empty_host.kill()
    return empty, full


async def _nats(ctx: Context, n: int, round_no: int) -> tuple[float, float]:
    from bench.peers.nats_peer import NatsPeer, publish_batch

    key = f"recovery-{ctx.system}"
    if key not in ctx.state:
        peer = NatsPeer(ctx.root / key, sync_always=ctx.peer().sync_always)
        empty = await _time_nats(peer, None, 0)
        client, js = await peer.connect()
        subject = await peer.add_stream(js, "RECOVERY")
        for first in range(1, n + 1, CHUNK):
            bodies = [payload_bytes(seq) for seq in range(first, min(n + 1, first + CHUNK))]
            await publish_batch(js, subject, "RECOVERY", first, bodies)
        await client.close()
        assert peer.server is not None
        peer.server.kill()
        _cleanup(ctx, peer.stop)
        ctx.state[key] = (peer, empty)
    peer, empty = ctx.state[key]
    full = await _time_nats(peer, "RECOVERY", n)
    assert peer.server is not None
    peer.server.kill()
    return empty, full


async def _time_nats(peer: Any, stream: str | None, n: int) -> float:
    started = time.perf_counter()
    peer.start()
    while True:
        try:
            client, js = await peer.connect()
            try:
                if stream is None:
                    await js.account_info()
                    break
                info = await js.stream_info(stream)
                if info.state.messages == n:
                    break
            finally:
                await client.close()
        except Exception:
            await asyncio.sleep(0.005)
    return time.perf_counter() - started


async def _redis(ctx: Context, n: int, round_no: int) -> tuple[float, float]:
    from bench.peers.redis_peer import RedisPeer, entry_id, fields

    key = "recovery-redis"
    if key not in ctx.state:
        peer = RedisPeer(ctx.root / key)
        empty = await _time_redis(peer, 0)
        client: Any = peer.client()
        for first in range(1, n + 1, CHUNK):
            pipe = client.pipeline(transaction=False)
            for seq in range(first, min(n + 1, first + CHUNK)):
                pipe.xadd("recovery", fields("recovery", seq, payload_bytes(seq)), id=entry_id(seq))
            await pipe.execute()
        await client.aclose()
        assert peer.server is not None
        peer.server.kill()
        _cleanup(ctx, peer.stop)
        ctx.state[key] = (peer, empty)
    peer, empty = ctx.state[key]
    full = await _time_redis(peer, n)
    assert peer.server is not None
    peer.server.kill()
    return empty, full


async def _time_redis(peer: Any, n: int) -> float:
    started = time.perf_counter()
    peer.start()
    client: Any = peer.client()
    try:
        while True:
            try:
                if await client.xlen("recovery") == n:
                    break
            except Exception:
                await asyncio.sleep(0.005)
    finally:
        await client.aclose()
    return time.perf_counter() - started
