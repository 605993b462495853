"""Reconnection: backoff arithmetic, and a real host killed with SIGKILL and restarted on the same port and data dir."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from client_host_process import DATABASE, HostProcess

from autopilot_sync.client import (
    BackoffPolicy,
    ChangeCause,
    ConnectionState,
    NotConnectedError,
    ReducerCommitted,
    ResubscribeRequest,
    RowChange,
    StateEvent,
    SyncClient,
    TokenGrant,
    connect,
)

pytestmark = pytest.mark.timeout(90)


def test_full_jitter_stays_under_the_capped_exponential_ceiling() -> None:
    policy = BackoffPolicy(base=0.5, cap=30.0)
    rng = random.Random(7)
    assert [policy.ceiling(n) for n in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    for attempt in range(100):
        assert 0.0 <= policy.delay(attempt, rng) <= policy.ceiling(attempt)
    with pytest.raises(ValueError):
        BackoffPolicy(base=2.0, cap=1.0)


async def test_cache_converges_after_sigkill_and_restart(host: HostProcess) -> None:
    async with await connect(host.base_url, DATABASE) as writer:
        for name, age in (("ann", 1), ("bob", 2)):
            assert isinstance(await writer.call("add_person", name, age), ReducerCommitted)

    gate = asyncio.Event()
    rewrites: list[ResubscribeRequest] = []
    rewrite_called = asyncio.Event()

    async def rewrite(request: ResubscribeRequest) -> list[str]:
        rewrites.append(request)
        rewrite_called.set()
        await gate.wait()  # hold the resubscribe while the test changes the server's state
        return ["SELECT * FROM person WHERE age >= 0"]

    events: list[StateEvent] = []
    backing_off = asyncio.Event()
    resynced: asyncio.Queue[list[RowChange]] = asyncio.Queue()
    policy = BackoffPolicy(base=0.05, cap=0.5)
    client = SyncClient(host.base_url, DATABASE, policy=policy, rewrite_queries=rewrite)
    client.on_state(events.append)
    client.on_state(lambda e: backing_off.set() if e.state is ConnectionState.BACKING_OFF else None)
    client.cache.on_batch(
        lambda changes: (
            resynced.put_nowait(list(changes)) if changes and changes[0].cause is ChangeCause.RESYNC else None
        )
    )
    async with client:
        qs = await client.subscribe(["SELECT * FROM person"])
        await asyncio.wait_for(qs.applied(), 10)
        first_identity = client.connection.identity if client.connection else None
        assert sorted(p.name for p in client.cache.rows("person")) == ["ann", "bob"]

        await host.kill()
        await asyncio.wait_for(backing_off.wait(), 10)
        with pytest.raises(NotConnectedError):
            await client.call("add_person", "nobody", 0)
        assert sorted(p.name for p in client.cache.rows("person")) == ["ann", "bob"]  # old view kept offline

        restarted = HostProcess(host.data_dir, host.port)
        await restarted.start()
        try:
            await asyncio.wait_for(rewrite_called.wait(), 20)
            async with await connect(restarted.base_url, DATABASE) as writer:
                await writer.call("delete_person", "ann")
                await writer.call("add_person", "cy", 3)
                await writer.call("set_age", "bob", 20)
            gate.set()
            changes = await asyncio.wait_for(resynced.get(), 10)
            summary = sorted((c.kind.value, c.row.name) for c in changes)
            assert summary == [("delete", "ann"), ("insert", "cy"), ("update", "bob")]
            assert sorted((p.name, p.age) for p in client.cache.rows("person")) == [("bob", 20), ("cy", 3)]
            assert qs.queries == ("SELECT * FROM person WHERE age >= 0",)
            assert rewrites[0].queries == ("SELECT * FROM person",)
            conn = await client.wait_connected()
            assert conn.identity == first_identity  # the server-issued token is reused
            live: asyncio.Queue[Any] = asyncio.Queue()
            client.cache.on_insert("person", live.put_nowait)
            await client.call("add_person", "dan", 4)
            assert (await asyncio.wait_for(live.get(), 5)).name == "dan"
        finally:
            await restarted.stop()
    states = [e.state for e in events]
    assert states[:2] == [ConnectionState.CONNECTING, ConnectionState.CONNECTED]
    assert ConnectionState.BACKING_OFF in states and states[-1] is ConnectionState.CLOSED
    backoff = next(e for e in events if e.state is ConnectionState.BACKING_OFF)
    assert backoff.next_retry_at is not None and backoff.delay is not None and backoff.reason


async def test_token_provider_is_asked_again_after_a_refused_token(host: HostProcess) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.post(f"{host.base_url}/v1/identity") as response:
        good = (await response.json())["token"]
    grants = ["not-a-valid-token", good]
    asked: list[str] = []

    async def provider() -> TokenGrant:
        token = grants[min(len(asked), len(grants) - 1)]
        asked.append(token)
        return TokenGrant(token)

    async with SyncClient(host.base_url, DATABASE, token_provider=provider, policy=BackoffPolicy(base=0.05)) as client:
        conn = await asyncio.wait_for(client.wait_connected(), 10)
        assert asked == ["not-a-valid-token", good]
        assert isinstance(await conn.call("add_person", "eve", 5), ReducerCommitted)


async def test_live_session_is_renewed_at_the_grants_refresh_time_without_backoff(host: HostProcess) -> None:
    import time

    import aiohttp

    asked: list[float] = []

    async def provider() -> TokenGrant:
        async with aiohttp.ClientSession() as session, session.post(f"{host.base_url}/v1/identity") as response:
            token = (await response.json())["token"]
        now = time.time()
        asked.append(now)
        return TokenGrant(token, expires_at=now + 30, refresh_at=now + 0.5)

    events: list[StateEvent] = []
    async with SyncClient(host.base_url, DATABASE, token_provider=provider, policy=BackoffPolicy(base=5.0)) as client:
        client.on_state(events.append)
        people = await client.subscribe(["SELECT * FROM person"])
        for _ in range(200):
            if len(asked) >= 3 and client.connection is not None:
                break
            await asyncio.sleep(0.05)
        conn = await asyncio.wait_for(client.wait_connected(), 10)
        assert isinstance(await conn.call("add_person", "fay", 6), ReducerCommitted)
        await asyncio.wait_for(people.applied(), 10)
    assert len(asked) >= 3, "the token was not refreshed while the session was live"
    refreshes = [e for e in events if e.reason == "token refresh" and e.state is ConnectionState.CONNECTING]
    assert refreshes, [(e.state, e.reason) for e in events]
    assert all(e.state is not ConnectionState.BACKING_OFF for e in events), "a refresh waited for a backoff"


async def test_a_provider_without_a_newer_token_keeps_the_session_and_never_spins(host: HostProcess) -> None:
    import time

    import aiohttp

    async with aiohttp.ClientSession() as session, session.post(f"{host.base_url}/v1/identity") as response:
        token = (await response.json())["token"]
    stale = TokenGrant(token, expires_at=time.time() + 30, refresh_at=time.time() - 1)
    asked: list[float] = []

    async def provider() -> TokenGrant:
        asked.append(time.time())
        return stale

    async with SyncClient(host.base_url, DATABASE, token_provider=provider) as client:
        conn = await asyncio.wait_for(client.wait_connected(), 10)
        await asyncio.sleep(2.5)
        assert client.connection is conn and client.reconnects == 0
        assert isinstance(await conn.call("add_person", "gus", 7), ReducerCommitted)
    assert 1 <= len(asked) <= 4, asked
