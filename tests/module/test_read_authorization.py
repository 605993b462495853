"""Who reads a stream is decided by its `stream_reader` rows, not by the token: the sync module's row-level security.

Through real host and control processes: subscriptions (initial rows and deltas) and one-off queries over the
WebSocket, and HTTP `/sql`. A reader token that claims every stream (`*`) still reads only the streams it was made
a reader of.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from autopilot_sync.client import ReducerCommitted, connect
from autopilot_sync.contract.canonical import hash_value
from autopilot_sync.control.client import fetch_session_token
from autopilot_sync.devtools.stack import DATABASE, LocalStack
from autopilot_sync.nostr.keys import SecretKey
from autopilot_sync.spacetime.values import Identity, Timestamp
from autopilot_sync.sync_bindings import ROW_TYPES, AppendSyncEventsBatchItem


def event(stream: str, seq: int) -> AppendSyncEventsBatchItem:
    text, digest = hash_value({"stream": stream, "seq": seq})
    return AppendSyncEventsBatchItem(
        stream_id=stream,
        idempotency_key=f"{stream}:{seq}",
        kind="test",
        payload=text,
        payload_hash=digest,
        expected_seq=seq,
        published_at=Timestamp.now(),
    )


async def test_reads_follow_the_streams_a_reader_was_granted_on_every_path(tmp_path: Path, served_module: str) -> None:
    stack = LocalStack(tmp_path, module=served_module)
    stack.start_all(runtime=False)
    try:
        writer = await fetch_session_token(
            stack.control_url, stack.producer_key, ("sync.append", "sync.subscribe"), ("*",), None, "test"
        )
        reader = await fetch_session_token(
            stack.control_url, SecretKey.generate(), ("sync.subscribe",), ("*",), None, "desktop"
        )
        producer = await connect(stack.host_url, DATABASE, token=writer.token)
        for stream in ("a", "b"):
            assert isinstance(await producer.call("append_sync_events", [event(stream, 1)]), ReducerCommitted)
        granted = await producer.call("grant_stream_readers", "a", [Identity.from_hex(reader.identity)])
        assert isinstance(granted, ReducerCommitted), granted

        connection = await connect(stack.host_url, DATABASE, token=reader.token, row_types=ROW_TYPES)
        try:
            everything = await connection.subscribe(["SELECT * FROM sync_event"])
            await everything.applied()
            assert sorted(row.stream_id for row in connection.cache.rows("sync_event")) == ["a"]
            rows = (await connection.one_off_query("SELECT * FROM sync_event")).rows("sync_event")
            assert [row.stream_id for row in rows] == ["a"]
            named = await connection.one_off_query("SELECT * FROM sync_event WHERE stream_id = 'b'")
            assert not named.rows("sync_event")
            assert [
                row.stream_id
                for row in (await connection.one_off_query("SELECT * FROM stream_head")).rows("stream_head")
            ] == ["a"]

            # deltas: a new event of b never arrives; granting b brings its history, then its new events
            assert isinstance(await producer.call("append_sync_events", [event("b", 2)]), ReducerCommitted)
            assert isinstance(await producer.call("append_sync_events", [event("a", 2)]), ReducerCommitted)
            await _until(lambda: len(connection.cache.rows("sync_event")) == 2)
            assert sorted(row.stream_id for row in connection.cache.rows("sync_event")) == ["a", "a"]
            granted = await producer.call("grant_stream_readers", "b", [Identity.from_hex(reader.identity)])
            assert isinstance(granted, ReducerCommitted), granted
            await _until(lambda: len(connection.cache.rows("sync_event")) == 4)
        finally:
            await connection.close()
            await producer.close()

        async with aiohttp.ClientSession() as http:
            url = f"{stack.host_url}/v1/database/{DATABASE}/sql"
            headers = {"Authorization": f"Bearer {reader.token}"}
            async with http.post(url, data="SELECT stream_id, seq FROM sync_event", headers=headers) as response:
                assert response.status == 200, await response.text()
                (result,) = await response.json()
            assert sorted(tuple(row) for row in result["rows"]) == [("a", 1), ("a", 2), ("b", 1), ("b", 2)]
            async with http.post(url, data="SELECT * FROM sync_event") as response:  # anonymous: a reader of nothing
                assert response.status == 200, await response.text()
                (result,) = await response.json()
            assert result["rows"] == []
    finally:
        stack.stop_all()


async def _until(check: Any, within: float = 10.0) -> None:
    for _ in range(int(within / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")
