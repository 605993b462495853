"""The SDK against a real `autopilot-sync host` process: subscribe, updates, reducer results, two clients, tokens."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from client_host_process import DATABASE, HostProcess

from autopilot_sync.client import (
    AuthenticationError,
    ChangeKind,
    Compression,
    ConnectError,
    ConnectionRejectedError,
    OneOffQueryError,
    ReducerArgumentError,
    ReducerCommitted,
    ReducerFailed,
    ReducerInternalError,
    SubscriptionFailedError,
    UnknownReducerError,
    connect,
)
from autopilot_sync.client.connection import ConnectOptions
from autopilot_sync.client.session import PROTOCOL_V2
from autopilot_sync.devtools.host_tokens import BANNED_SUBJECT, host_signed_token

pytestmark = pytest.mark.timeout(60)


async def test_subscribe_receives_initial_rows_and_live_updates(host: HostProcess) -> None:
    async with await connect(host.base_url, DATABASE) as writer:
        assert isinstance(await writer.call("add_person", "ann", 30), ReducerCommitted)
    async with await connect(host.base_url, DATABASE) as conn:
        assert conn.protocol == "v3.bsatn.spacetimedb"
        assert conn.identity.hex.startswith("c200")
        events: list[tuple[str, Any]] = []
        conn.cache.on_insert("person", lambda row: events.append(("insert", row.name)))
        conn.cache.on_update("person", lambda old, new: events.append(("update", (old.age, new.age))))
        conn.cache.on_delete("person", lambda row: events.append(("delete", row.name)))
        qs = await conn.subscribe(["SELECT * FROM person"])
        await qs.applied()
        assert [p.name for p in conn.cache.rows("person")] == ["ann"]
        result = await conn.call("set_age", "ann", 31)
        assert isinstance(result, ReducerCommitted)
        assert [(c.kind, c.old.age, c.new.age) for c in result.changes] == [(ChangeKind.UPDATE, 30, 31)]
        await conn.call("delete_person", "ann")
        assert events == [("insert", "ann"), ("update", (30, 31)), ("delete", "ann")]
        await qs.unsubscribe()
        assert conn.cache.rows("person") == []


async def test_reducer_results_are_typed(host: HostProcess) -> None:
    async with await connect(host.base_url, DATABASE) as conn:
        failed = await conn.call("set_age", "nobody", 1)
        assert isinstance(failed, ReducerFailed)
        assert failed.message == "not_found: no person named nobody"
        assert failed.code is None  # not one of the sync module's codes
        assert isinstance(await conn.call("panic"), ReducerInternalError)
        rolled_back = await conn.call("fail", "nope")
        assert isinstance(rolled_back, ReducerFailed) and rolled_back.message == "nope"
        with pytest.raises(UnknownReducerError):
            await conn.call("no_such_reducer")
        with pytest.raises(ReducerArgumentError):
            await conn.call("add_person", "ann", "not a number")
        empty = await conn.call("add_person", "bob", 2)
        assert isinstance(empty, ReducerCommitted) and empty.changes == ()  # nothing subscribed


async def test_two_clients_see_each_others_transactions(host: HostProcess) -> None:
    async with (
        await connect(host.base_url, DATABASE) as alice,
        await connect(host.base_url, DATABASE, compression=Compression.BROTLI) as bob,
    ):
        assert alice.identity != bob.identity
        seen: asyncio.Queue[str] = asyncio.Queue()
        bob.cache.on_insert("message", lambda row: seen.put_nowait(row.text))
        await (await bob.subscribe(["SELECT * FROM message"])).applied()
        await alice.call("send_message", "hello bob " + "x" * 2000)  # over the compression threshold
        text = await asyncio.wait_for(seen.get(), 5)
        assert text.startswith("hello bob")
        [row] = bob.cache.rows("message")
        assert row.sender == alice.identity


async def test_v2_protocol_and_one_off_queries(host: HostProcess) -> None:
    options = ConnectOptions(protocols=(PROTOCOL_V2,), compression=Compression.NONE)
    async with await connect(host.base_url, DATABASE, options=options) as conn:
        assert conn.protocol == PROTOCOL_V2
        await conn.call("add_person", "cy", 5)
        result = await conn.one_off_query("SELECT * FROM person")
        assert [p.name for p in result.rows("person")] == ["cy"]
        with pytest.raises(OneOffQueryError):
            await conn.one_off_query("SELECT * FROM no_such_table")
        qs = await conn.subscribe(["SELECT * FROM no_such_table"])
        with pytest.raises(SubscriptionFailedError):
            await qs.applied()


async def test_token_is_exchanged_and_identity_kept(host: HostProcess) -> None:
    async with aiohttp.ClientSession() as session, session.post(f"{host.base_url}/v1/identity") as response:
        minted = await response.json()
    async with await connect(host.base_url, DATABASE, token=minted["token"]) as conn:
        assert conn.identity.hex == minted["identity"]
    with pytest.raises(AuthenticationError):
        await connect(host.base_url, DATABASE, token=minted["token"][:-4] + "AAAA")


async def test_generated_row_types_are_used(host: HostProcess) -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Person:
        id: int
        name: str
        age: int

    async with await connect(host.base_url, DATABASE, row_types={"person": Person}) as conn:
        await (await conn.subscribe(["SELECT * FROM person"])).applied()
        result = await conn.call("add_person", "dee", 9)
        assert isinstance(result, ReducerCommitted)
        assert result.changes[0].new == Person(1, "dee", 9)


async def test_a_connection_the_server_refuses_carries_the_servers_reason(host: HostProcess) -> None:
    # The chat module's client_connected refuses the subject `banned`; the host upgrades, then closes with the reason.
    with pytest.raises(ConnectionRejectedError) as caught:
        await connect(host.base_url, DATABASE, token=host_signed_token(host.data_dir, BANNED_SUBJECT))
    assert caught.value.reason == "forbidden: this subject is banned"
    assert caught.value.code == 1008
    assert "forbidden: this subject is banned" in str(caught.value)
    assert isinstance(caught.value, ConnectError)


async def test_a_lone_v3_call_is_written_in_the_callers_step_and_a_bursts_calls_share_frames(host: HostProcess) -> None:
    # A call sent while nothing else is awaited leaves at once: no end-of-turn flush, no loop turn of its own.
    async with await connect(host.base_url, DATABASE) as conn:
        before = conn.frames_sent
        call = asyncio.ensure_future(conn.call("add_person", "lone", 1))
        await asyncio.sleep(0)  # the call's task took its first step (this task was queued behind it)
        assert conn.frames_sent == before + 1
        assert isinstance(await call, ReducerCommitted)
        before = conn.frames_sent
        results = await asyncio.gather(*(conn.call("add_person", f"b{i}", i) for i in range(3)))
        assert all(isinstance(r, ReducerCommitted) for r in results)
        assert conn.frames_sent - before == 2  # the first alone, the two sent while it was in flight together
        rows = (await conn.one_off_query("SELECT * FROM person")).rows("person")
        assert sorted(p.name for p in rows) == ["b0", "b1", "b2", "lone"]


async def test_v3_batches_messages_sent_together_into_one_frame_and_v2_does_not(host: HostProcess) -> None:
    # v3 lets a client put several messages in one binary frame (as the official SDK's v3 outbound queue does).
    async with await connect(host.base_url, DATABASE) as conn:
        assert conn.protocol == "v3.bsatn.spacetimedb"
        before = conn.frames_sent
        results = await asyncio.gather(*(conn.call("add_person", f"p{i}", i) for i in range(40)))
        assert all(isinstance(r, ReducerCommitted) for r in results)
        assert conn.frames_sent - before < 10  # 40 calls, a handful of frames
        rows = (await conn.one_off_query("SELECT * FROM person")).rows("person")
        assert sorted(p.age for p in rows) == list(range(40))  # every message of every frame ran
    options = ConnectOptions(protocols=(PROTOCOL_V2,))
    async with await connect(host.base_url, DATABASE, options=options) as conn:
        before = conn.frames_sent
        await asyncio.gather(*(conn.call("add_person", f"q{i}", i) for i in range(5)))
        assert conn.frames_sent - before == 5  # v2: one message per frame
