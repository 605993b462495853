"""`reconnect-storm`: hundreds of SDK clients reset at once; a probe reducer call must keep answering."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import aiohttp

from autopilot_sync.client import (
    BackoffPolicy,
    ConnectionState,
    ReducerCommitted,
    StateEvent,
    SyncClient,
    TokenGrant,
    connect,
)
from autopilot_sync.client.schema import fetch_schema
from autopilot_sync.verification.scenarios.run import PROBE_BOUND, Run, key_hex, token_grant
from autopilot_sync.verification.stack import DATABASE, wait_until


def _count_reason(reasons: Counter[str], event: StateEvent) -> None:
    if event.state is ConnectionState.BACKING_OFF:
        reasons[(event.reason or "")[:120]] += 1


async def reconnect_storm(run: Run) -> None:
    """Hundreds of SDK clients lose their connection at once and come back with full-jitter backoff; a probe reducer
    call on a separate connection must keep answering within PROBE_BOUND; all must converge."""
    await run.stack.start()
    await run.producer.publish(2, 2)
    stream = run.producer.streams[0]
    url = run.stack.proxy("clients→host").url
    key_names = [f"storm{k}" for k in range(run.profile.storm_keys)]
    grants = {name: await token_grant(run, name, "storm") for name in key_names}
    async with aiohttp.ClientSession() as http:
        schema = await fetch_schema(http, run.stack.host_url, DATABASE, grants[key_names[0]].token)
    clients: list[SyncClient] = []
    reasons: Counter[str] = Counter()
    run.metrics["storm_close_reasons"] = reasons
    for i in range(run.profile.storm_clients):
        grant = grants[key_names[i % len(key_names)]]

        async def provide(grant: TokenGrant = grant) -> TokenGrant:
            return grant

        client = SyncClient(
            url,
            DATABASE,
            token_provider=provide,
            schema=schema,
            policy=BackoffPolicy(base=0.5, cap=5.0),
            rng=random.Random(f"{run.seed}:c{i}"),
        )
        client.on_state(lambda event: _count_reason(reasons, event))
        clients.append(client)
    started = time.monotonic()
    for offset in range(0, len(clients), 50):
        chunk = clients[offset : offset + 50]
        for client in chunk:
            await client.start()
            await client.subscribe([f"SELECT * FROM stream_head WHERE stream_id = '{stream}'"])
        await asyncio.gather(*(c.wait_connected() for c in chunk))
    run.note("storm clients connected", clients=len(clients), seconds=round(time.monotonic() - started, 2))
    per_key = {
        key_hex(run, name): sum(1 for i in range(len(clients)) if i % len(key_names) == k)
        for k, name in enumerate(key_names)
    }
    probe_grant = await token_grant(run, "probe", "probe")
    probe = await connect(run.stack.host_url, DATABASE, token=probe_grant.token)
    run.extra_presence = {**per_key, key_hex(run, "probe"): 1}
    await run.presence_converges("storm clients up", 30)

    latencies: list[float] = []
    stop = asyncio.Event()

    async def probing() -> None:
        while not stop.is_set():
            began = time.monotonic()
            result = await probe.call("heartbeat")
            latencies.append(time.monotonic() - began)
            if not isinstance(result, ReducerCommitted):
                run.problems.append(f"probe heartbeat failed: {result}")
            await asyncio.sleep(0.2)

    prober = asyncio.create_task(probing())
    await asyncio.sleep(0.5)
    reset = run.stack.proxy("clients→host").reset_all()
    storm_began = time.monotonic()
    try:
        await wait_until(
            f"{len(clients)} clients reconnected",
            lambda: all(c.reconnects >= 1 and c.connection is not None for c in clients),
            90,
            every=0.5,
        )
    except TimeoutError as exc:
        run.problems.append(str(exc))
    recovered = time.monotonic() - storm_began
    await run.presence_converges("after the storm", 30)
    await run.producer.publish(3, 3)
    head = run.acked_heads()[stream]

    def caught_up() -> bool:
        for client in clients:
            rows = client.cache.rows("stream_head")
            if not rows or int(rows[0][1]) != head:
                return False
        return True

    try:
        await wait_until("every storm client to see the new head", caught_up, 30)
    except TimeoutError as exc:
        run.problems.append(str(exc))
    stop.set()
    await prober
    worst = max(latencies) if latencies else float("inf")
    run.metrics.update(
        storm_clients=len(clients),
        storm_resets=reset,
        storm_recovery_seconds=round(recovered, 2),
        probe_calls=len(latencies),
        probe_max_seconds=round(worst, 3),
    )
    if worst > PROBE_BOUND:
        run.problems.append(f"probe reducer call took {worst:.2f}s during the storm (bound {PROBE_BOUND}s)")
    if reset < len(clients):
        run.problems.append(f"only {reset} connections were reset, expected at least {len(clients)}")
    await asyncio.gather(*(c.close() for c in clients))
    await probe.close()
    run.extra_presence = {}
