"""`ready` means ready: requests sent the moment a fresh host prints its ready line are all answered correctly.

The host leaves out of its start what the first request of a kind may load itself (aiohttp's client, the schema
diff, the SQL parser, token checking: `auth/aiohttp_client.py`, `host/warm.py`, docs/performance.md "Round 6 —
startup3"), and its warm-up imports the rest in the background a moment after `ready`. These requests go out as
soon as the ready line is read, all at once, so they reach a host whose warm-up has not run yet: each must still
get the right answer (only sooner or later), never an error.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from autopilot_sync.devtools.processes import start_host
from autopilot_sync.spacetime.frames import decode_server_frame, split_server_body
from autopilot_sync.spacetime.messages import (
    InitialConnection,
    ServerMessage,
    Subscribe,
    SubscribeApplied,
    encode_client_message,
)

DATABASE = "chat"
V2_PROTOCOL = "v2.bsatn.spacetimedb"


async def _first_messages(http: aiohttp.ClientSession, url: str) -> list[ServerMessage]:
    """Mint an anonymous identity, open a v2 socket with it, subscribe: the messages up to `SubscribeApplied`."""
    async with http.post(f"{url}/v1/identity") as response:
        assert response.status == 200, await response.text()
        token = (await response.json())["token"]
    headers = {"Authorization": f"Bearer {token}"}
    seen: list[ServerMessage] = []
    async with http.ws_connect(
        f"{url}/v1/database/{DATABASE}/subscribe", protocols=(V2_PROTOCOL,), headers=headers
    ) as ws:
        await ws.send_bytes(encode_client_message(Subscribe(1, 1, ("SELECT * FROM person",))))
        while not any(isinstance(message, SubscribeApplied) for message in seen):
            message = await ws.receive(timeout=30)
            assert message.type is aiohttp.WSMsgType.BINARY, message
            seen.extend(split_server_body(decode_server_frame(message.data)))
    return seen


async def _status_and_body(http: aiohttp.ClientSession, method: str, url: str, data: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"} if url.endswith("add_person") else {}
    async with http.request(method, url, data=data, headers=headers) as response:
        return response.status, await response.read()


async def test_requests_sent_the_moment_a_fresh_host_is_ready_are_all_answered_correctly(tmp_path: Path) -> None:
    host = start_host(tmp_path, module="autopilot_sync.examples.chat", database=DATABASE)
    base = f"{host.url}/v1/database/{DATABASE}"
    try:
        async with aiohttp.ClientSession() as http:
            socket, ping, call, sql, schema, metrics = await asyncio.gather(
                _first_messages(http, host.url),
                _status_and_body(http, "GET", f"{host.url}/v1/ping"),
                _status_and_body(http, "POST", f"{base}/call/add_person", '["ada", 36]'),
                _status_and_body(http, "POST", f"{base}/sql", "SELECT * FROM person WHERE name = 'nobody'"),
                _status_and_body(http, "GET", f"{base}/schema?version=9"),
                _status_and_body(http, "GET", f"{host.url}/metrics"),
            )
        assert isinstance(socket[0], InitialConnection)
        assert isinstance(socket[-1], SubscribeApplied)
        assert ping[0] == 200
        assert call[0] == 200, call
        assert sql[0] == 200 and b'"rows":[]' in sql[1].replace(b" ", b""), sql
        assert schema[0] == 200 and b'"tables"' in schema[1], schema[0]
        assert metrics[0] == 200 and b"autopilot_sync_host_commits_total" in metrics[1]
    finally:
        assert host.stop() == 0
