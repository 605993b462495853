"""(g) A large store: host memory per retained event, catch-up from seq 1 on it, and start-up with that history.

Ours only (the goals are absolute). A dedicated host is filled with `store_events` events (the suite's ~250-byte
payload) over `store_streams` streams, 500 events per `append_sync_events` call with `AUTOPILOT_SYNC_HOST_FSYNC=
false` (how fast it fills is not measured; what it holds is the same). Then:
- memory per retained event = (host RSS after the fill - RSS of the same host before it) / events; RSS from
  /proc one second after the last call (the Python allocator keeps what it took, so this is what the host holds);
- catch-up from seq 1 = one stream's whole history (`store_events / store_streams` events) resumed by a fresh SDK
  subscriber (`seq > 0`) on the full store: events/s until `SubscribeApplied` is in its cache;
- ready with history = the host SIGKILLed and started again on that directory with the default settings (fsync on,
  the default snapshot interval): seconds from spawn to its `ready` line. With 500 events per commit the history is
  `store_events / 500` commits, fewer than the snapshot interval in commits; the snapshot-by-bytes rule (64 MiB of
  log) takes one every ~130,000 events, so a start loads the newest snapshot and replays up to that much log.
Only the first round builds the store; later rounds measure catch-up and restart again on it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from autopilot_sync.devtools.processes import free_port
from bench.ours import Ours, event_input, resume_query
from bench.peers.common import rss_bytes
from bench.suite import OURS, Context, Metric, payload

TITLE = "a large store: memory per retained event, catch-up, start-up"
BATCH = 500
#: A fill of 1,000,000 events outlives a session token on a loaded machine: a fresh connection every this many calls.
RECONNECT_EVERY = 100
SETTLE_SECONDS = 1.0


def metrics(ctx: Context) -> list[Metric]:
    n = ctx.sizes.store_events
    per_stream = n // ctx.sizes.store_streams
    return [
        Metric(
            "g", f"host memory per retained event ({n:,})", "bytes", False, "≤ 600 bytes", lambda m: m["ours"] <= 600
        ),
        Metric(
            "g",
            f"catch-up from seq 1 on the large store ({per_stream:,} events)",
            "events/s",
            True,
            "≥ 100,000 events/s",
            lambda m: m["ours"] >= 100_000,
        ),
        Metric("g", f"ready with {n:,} events of history", "s", False, "≤ 1 s", lambda m: m["ours"] <= 1.0),
    ]


async def measure(ctx: Context, system: str, round_no: int) -> dict[str, float]:
    if system != OURS:
        return {}
    n = ctx.sizes.store_events
    per_stream = n // ctx.sizes.store_streams
    found: dict[str, float] = {}
    if "store" not in ctx.state:
        ctx.state["store"] = await _build(ctx)
    state = ctx.state["store"]
    if round_no == 0:
        found[f"host memory per retained event ({n:,})"] = state["bytes_per_event"]
    found[f"ready with {n:,} events of history"] = _restart(ctx, state)
    found[f"catch-up from seq 1 on the large store ({per_stream:,} events)"] = await _catch_up(ctx.ours, state)
    return found


async def _build(ctx: Context) -> dict[str, Any]:
    ours = ctx.ours
    data_dir = ctx.root / "store-ours"
    port = free_port()
    host = ours.spawn_host(data_dir, port, {"AUTOPILOT_SYNC_HOST_FSYNC": "false"})
    url = f"http://127.0.0.1:{port}"
    await asyncio.to_thread(ours.trust, url)
    prefix = ctx.name("store-")
    streams = [f"{prefix}-{i}" for i in range(ctx.sizes.store_streams)]
    per_stream = ctx.sizes.store_events // len(streams)
    conn = await ours.connect(producer=True, url=url)
    try:
        await ours.append(conn, [event_input(streams[0], 1, payload(1))])  # warm: schema, first grant
        await asyncio.sleep(SETTLE_SECONDS)
        before = rss_bytes(host.process.pid)
        calls = 0
        for stream in streams:
            first = 2 if stream == streams[0] else 1
            for start in range(first, per_stream + 1, BATCH):
                if calls and calls % RECONNECT_EVERY == 0:  # a socket closes when its token expires (1008)
                    await conn.close()
                    conn = await ours.connect(producer=True, url=url)
                stop = min(per_stream + 1, start + BATCH)
                await ours.append(conn, [event_input(stream, seq, payload(seq)) for seq in range(start, stop)])
                calls += 1
        await asyncio.sleep(SETTLE_SECONDS)
        after = rss_bytes(host.process.pid)
    finally:
        await conn.close()
    host.kill()
    events = per_stream * len(streams)
    ctx.state.setdefault("cleanup", [])
    return {
        "data_dir": data_dir,
        "port": port,
        "stream": streams[len(streams) // 2],
        "events_per_stream": per_stream,
        "bytes_per_event": (after - before) / (events - 1),
        "host": None,
    }


def _restart(ctx: Context, state: dict[str, Any]) -> float:
    if state["host"] is not None:
        state["host"].kill()
    started = time.perf_counter()
    state["host"] = ctx.ours.spawn_host(state["data_dir"], state["port"])
    ready = time.perf_counter() - started
    ctx.state["cleanup"].append(state["host"].kill)
    return ready


async def _catch_up(ours: Ours, state: dict[str, Any]) -> float:
    conn = await ours.connect(url=f"http://127.0.0.1:{state['port']}")
    try:
        started = time.perf_counter()
        await (await conn.subscribe([resume_query(state["stream"], 0)])).applied()
        elapsed = time.perf_counter() - started
        held = conn.cache.count("sync_event")
        if held != state["events_per_stream"]:
            raise RuntimeError(f"caught up {held} of {state['events_per_stream']}")
        return held / elapsed
    finally:
        await conn.close()
