"""Attacks on who may read what, against real host, control and runtime processes (issue 16, items 2 and 3).

Each test is one attack and names the promise it checks. The stack is the local one: the runtime publishes run
events and makes the stack's demo users readers of its streams; a self-made Nostr key gets a token (control's
default policy lets any key hold reader scopes) but is the reader of nothing. One stack serves the module: the
attacks only read.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from autopilot_sync.client import ReducerCommitted, connect
from autopilot_sync.client.connection import Connection
from autopilot_sync.control.client import TokenFetchError, fetch_session_token
from autopilot_sync.devtools.stack import DATABASE, LocalStack
from autopilot_sync.nostr.keys import SecretKey
from autopilot_sync.runtime.access import producer_session

RUN = "attack-1"
STREAM = f"runtime.run.{RUN}.events"
PRIVATE_TABLES = ("sync_event", "stream_head", "stream_checkpoint", "active_connection", "stream_reader", "sync_member")


async def _post_run_events(stack: LocalStack, count: int, start: int) -> None:
    """Append run events as the local producer: over the runtime's producer socket (a plain POST is 401)."""
    events = [{"kind": "run.message.delta", "data": {"n": start + i}} for i in range(count)]
    async with (
        producer_session(stack.producer_socket) as http,
        http.post(f"{stack.runtime_url}/v1/runs/{RUN}/events", json={"events": events}) as response,
    ):
        assert response.status == 200, await response.text()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    running = LocalStack(tmp_path_factory.mktemp("read-access"))
    running.start_all()
    try:
        asyncio.run(_post_run_events(running, 3, 0))
        yield running
    finally:
        running.stop_all()


async def _token(stack: LocalStack, key: SecretKey, streams: tuple[str, ...] | None = None) -> str:
    scopes = ("sync.subscribe", "sync.checkpoint.write")
    return (await fetch_session_token(stack.control_url, key, scopes, streams, None, "test")).token


async def _until(check: Any, what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out: {what}")


async def _sql(stack: LocalStack, query: str, token: str | None) -> list[Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{stack.host_url}/v1/database/{DATABASE}/sql", data=query, headers=headers) as response,
    ):
        text = await response.text()
        assert response.status == 200, text
        rows: list[Any] = json.loads(text)[0]["rows"]
        return rows


async def _reader(stack: LocalStack) -> Connection:
    """A demo user (a reader of the runtime's streams), connected, once the run's events are on the host."""
    connection = await connect(stack.host_url, DATABASE, token=await _token(stack, stack.user_keys[0]))

    async def published() -> bool:
        answer = await connection.one_off_query(f"SELECT * FROM sync_event WHERE stream_id = '{STREAM}'")
        return len(answer.rows("sync_event")) >= 3

    await _until(published, "the runtime's events reach the host")
    return connection


async def test_a_self_made_key_with_a_token_for_every_stream_reads_no_row_of_a_stream_it_is_no_reader_of(
    stack: LocalStack,
) -> None:
    reader = await _reader(stack)
    stranger = await connect(stack.host_url, DATABASE, token=await _token(stack, SecretKey.generate(), ("*",)))
    try:
        for query in ("SELECT * FROM sync_event", f"SELECT * FROM sync_event WHERE stream_id = '{STREAM}'"):
            query_set = await stranger.subscribe([query])
            await query_set.applied()
            assert not (await stranger.one_off_query(query)).rows("sync_event"), query
        assert not stranger.cache.rows("sync_event")
        assert not (await stranger.one_off_query("SELECT * FROM stream_head")).rows("stream_head")
        assert await _sql(stack, "SELECT * FROM sync_event", await _token(stack, SecretKey.generate(), ("*",))) == []
        assert await _sql(stack, "SELECT COUNT(*) AS n FROM sync_event", await _token(stack, SecretKey.generate())) == [
            [0]
        ]
    finally:
        await stranger.close()
        await reader.close()


async def test_a_reader_sees_exactly_the_rows_of_its_streams_and_its_own_checkpoints(stack: LocalStack) -> None:
    reader = await _reader(stack)
    try:
        rows = (await reader.one_off_query("SELECT * FROM sync_event")).rows("sync_event")
        assert {row.stream_id for row in rows} == {STREAM}
        heads = (await reader.one_off_query("SELECT * FROM stream_head")).rows("stream_head")
        assert [row.stream_id for row in heads] == [STREAM]
        assert isinstance(await reader.call("ack_checkpoint", STREAM, 1), ReducerCommitted)
        other = await connect(stack.host_url, DATABASE, token=await _token(stack, stack.user_keys[1]))
        try:
            assert isinstance(await other.call("ack_checkpoint", STREAM, 2), ReducerCommitted)
            mine = (await reader.one_off_query("SELECT * FROM stream_checkpoint")).rows("stream_checkpoint")
            theirs = (await other.one_off_query("SELECT * FROM stream_checkpoint")).rows("stream_checkpoint")
            assert [row.seq for row in mine] == [1] and [row.seq for row in theirs] == [2]
        finally:
            await other.close()
    finally:
        await reader.close()


async def test_anonymous_sql_sees_no_presence_heads_checkpoints_or_events(stack: LocalStack) -> None:
    reader = await _reader(stack)  # online, with a checkpoint: there is presence and a checkpoint to leak
    try:
        assert isinstance(await reader.call("ack_checkpoint", STREAM, 3), ReducerCommitted)
        assert await _sql(stack, "SELECT * FROM active_connection", await _token(stack, stack.user_keys[0]))
        for table in PRIVATE_TABLES:
            assert await _sql(stack, f"SELECT * FROM {table}", None) == [], table
        assert await _sql(stack, "SELECT nostr_pubkey_hex, npub FROM active_connection", None) == []
    finally:
        await reader.close()


async def test_deltas_reach_readers_and_never_a_stranger(stack: LocalStack) -> None:
    reader = await _reader(stack)
    stranger = await connect(stack.host_url, DATABASE, token=await _token(stack, SecretKey.generate(), ("*",)))
    leaked: list[Any] = []
    stranger.cache.on_insert("sync_event", lambda row: leaked.append(row))
    try:
        for connection in (reader, stranger):
            await (await connection.subscribe([f"SELECT * FROM sync_event WHERE stream_id = '{STREAM}'"])).applied()
        before = len(reader.cache.rows("sync_event"))
        await _post_run_events(stack, 2, 100)

        async def delivered() -> bool:
            return len(reader.cache.rows("sync_event")) >= before + 2

        await _until(delivered, "the reader gets the new events")
        await asyncio.sleep(0.5)  # a delta to the stranger would have arrived with the reader's
        assert leaked == [] and not stranger.cache.rows("sync_event")
    finally:
        await stranger.close()
        await reader.close()


async def test_asking_control_for_more_than_policy_gives_is_403_never_a_narrowed_token(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path, policy=True)
    stack.start_control()
    try:
        user = stack.user_keys[0]
        scopes = ("sync.subscribe", "sync.checkpoint.write")
        for streams in (("*",), ("runtime.*", "other"), ("secret.stream",)):
            with pytest.raises(TokenFetchError) as refused:
                await fetch_session_token(stack.control_url, user, scopes, streams, None, "desktop")
            assert (refused.value.status, refused.value.error) == (403, "stream_not_allowed"), streams
        with pytest.raises(TokenFetchError) as refused:
            await fetch_session_token(stack.control_url, SecretKey.generate(), scopes, None, None, "desktop")
        assert (refused.value.status, refused.value.error) == (403, "scope_not_allowed")
        with pytest.raises(TokenFetchError) as refused:
            await fetch_session_token(stack.control_url, user, ("sync.append",), None, None, "desktop")
        assert (refused.value.status, refused.value.error) == (403, "scope_not_allowed")
        granted = await fetch_session_token(stack.control_url, user, scopes, None, None, "desktop")
        assert granted.streams == ("runtime.*",)
    finally:
        stack.stop_all()
