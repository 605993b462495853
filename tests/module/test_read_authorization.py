"""Reading sync events needs `sync.subscribe`, and a token limited to some streams reads only those streams.

Through real host and control processes: subscriptions and one-off queries over the WebSocket, and HTTP `/sql`.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from autopilot_sync.client import ReducerCommitted, connect
from autopilot_sync.client.errors import OneOffQueryError, SubscriptionFailedError
from autopilot_sync.control.client import fetch_session_token
from autopilot_sync.devtools.stack import DATABASE, LocalStack
from autopilot_sync.module.canonical import hash_value
from autopilot_sync.nostr.keys import SecretKey
from autopilot_sync.spacetime.values import Timestamp


async def test_stream_limited_tokens_read_only_their_streams(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path)
    stack.start_all(runtime=False)
    try:
        writer = await fetch_session_token(
            stack.control_url, stack.producer_key, ("sync.append", "sync.subscribe"), ("*",), None, "test"
        )
        connection = await connect(stack.host_url, DATABASE, token=writer.token)
        for stream in ("a", "b"):
            text, digest = hash_value({"stream": stream})
            event = (stream, f"{stream}:1", "test", text, digest, 1, Timestamp.now())
            assert isinstance(await connection.call("append_sync_events", [event]), ReducerCommitted)
        await connection.close()

        reader = await fetch_session_token(
            stack.control_url, SecretKey.generate(), ("sync.subscribe",), ("a",), None, "desktop"
        )
        limited = await connect(stack.host_url, DATABASE, token=reader.token)
        try:
            allowed = await (
                await limited.subscribe(["SELECT * FROM sync_event WHERE stream_id = 'a' AND seq > 0"])
            ).applied()
            assert allowed.error is None
            with pytest.raises(SubscriptionFailedError, match="forbidden_stream"):
                await (await limited.subscribe(["SELECT * FROM sync_event"])).applied()
            with pytest.raises(SubscriptionFailedError, match="does not cover stream b"):
                await (await limited.subscribe(["SELECT * FROM sync_event WHERE stream_id = 'b'"])).applied()
            with pytest.raises(SubscriptionFailedError, match="forbidden_stream"):
                await (await limited.subscribe(["SELECT * FROM sync_event WHERE stream_id = 'a' OR seq > 0"])).applied()
            with pytest.raises(OneOffQueryError, match="forbidden_stream"):
                await limited.one_off_query("SELECT * FROM sync_event")
            rows = (await limited.one_off_query("SELECT * FROM sync_event WHERE stream_id = 'a'")).rows("sync_event")
            assert [row[0] for row in rows] == ["a"]
            # Presence and heads stay readable: the guard is on events only.
            assert (await limited.one_off_query("SELECT * FROM stream_head")).rows("stream_head")
        finally:
            await limited.close()

        async with aiohttp.ClientSession() as http:
            url = f"{stack.host_url}/v1/database/{DATABASE}/sql"
            async with http.post(url, data="SELECT * FROM sync_event") as response:  # anonymous: no scopes
                assert response.status == 400
                assert "unauthorized" in await response.text()
            headers = {"Authorization": f"Bearer {writer.token}"}
            async with http.post(url, data="SELECT * FROM sync_event", headers=headers) as response:
                assert response.status == 200
                (result,) = await response.json()
            assert sorted(row[0] for row in result["rows"]) == ["a", "b"]
    finally:
        stack.stop_all()
