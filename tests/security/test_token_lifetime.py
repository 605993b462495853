"""Tokens never outlive their origin, and a token is for one database: attacks on real host and control processes.

Control issues tokens of a few seconds (its minimum lifetime and refresh margin are settings) and the host's clock
leeway is one second, so every expiry below happens within seconds. Each test talks to the processes only over HTTP
and WebSocket, as an outsider would.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from autopilot_sync.control.client import SessionToken, fetch_session_token
from autopilot_sync.devtools.processes import start_host
from autopilot_sync.devtools.stack import DATABASE, LocalStack
from autopilot_sync.nostr.keys import SecretKey

#: The host tolerates this much clock skew (its `token_leeway_seconds`).
LEEWAY = 1
#: Control's shortest lifetime and refresh margin: tokens of a few seconds are allowed.
SHORT_TOKENS = {
    "AUTOPILOT_SYNC_CONTROL_TOKEN_TTL_MIN_SECONDS": "2",
    "AUTOPILOT_SYNC_CONTROL_TOKEN_REFRESH_MARGIN_SECONDS": "1",
}
V2 = "v2.bsatn.spacetimedb"
READER = SecretKey.generate()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    running = LocalStack(
        tmp_path_factory.mktemp("stack"),
        host_env={"AUTOPILOT_SYNC_HOST_TOKEN_LEEWAY_SECONDS": str(LEEWAY)},
        control_env=dict(SHORT_TOKENS),
    )
    try:
        running.start_all(runtime=False)
        yield running
    finally:
        running.stop_all()


def claims_of(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (what any holder can read)."""
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


async def reader_token(stack: LocalStack, ttl: int) -> SessionToken:
    return await fetch_session_token(stack.control_url, READER, ("sync.subscribe",), ("*",), ttl, "test")


async def exchange(http: aiohttp.ClientSession, stack: LocalStack, token: str) -> tuple[int, str]:
    """`POST /v1/identity/websocket-token` with `token`: (status, body)."""
    async with http.post(
        f"{stack.host_url}/v1/identity/websocket-token", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        return response.status, await response.text()


async def open_socket(http: aiohttp.ClientSession, stack: LocalStack, token: str) -> aiohttp.ClientWebSocketResponse:
    """A raw v2 socket opened the way the official SDK does: exchange the token, send the short one as `?token=`."""
    status, body = await exchange(http, stack, token)
    assert status == 200, body
    short = json.loads(body)["token"]
    return await http.ws_connect(
        f"{stack.host_url.replace('http', 'ws', 1)}/v1/database/{DATABASE}/subscribe?token={short}",
        protocols=(V2,),
        autoping=True,
    )


async def until_closed(ws: aiohttp.ClientWebSocketResponse, within: float) -> aiohttp.WSMessage:
    """Read (and drop) server messages until the close frame; fail if none comes within `within` seconds."""
    async with asyncio.timeout(within):
        while True:
            message = await ws.receive()
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return message


async def test_exchanged_token_never_outlives_the_token_it_came_from(stack: LocalStack) -> None:
    origin = await reader_token(stack, ttl=3)
    origin_exp = claims_of(origin.token)["exp"]
    async with aiohttp.ClientSession() as http:
        status, body = await exchange(http, stack, origin.token)
        assert status == 200, body
        first = json.loads(body)["token"]
        assert claims_of(first)["exp"] <= origin_exp
        assert claims_of(first)["origin_exp"] == origin_exp
        status, body = await exchange(http, stack, first)  # exchanging the exchanged token
        assert status == 200, body
        second = json.loads(body)["token"]
        assert claims_of(second)["exp"] <= origin_exp
        assert claims_of(second)["origin_exp"] == origin_exp
        await asyncio.sleep(max(origin_exp + LEEWAY + 1 - time.time(), 0))
        for renewed in (origin.token, first, second):
            status, body = await exchange(http, stack, renewed)
            assert status == 401, f"a token past its origin's expiry was exchanged again: {body}"
            assert "expired" in body


async def test_socket_is_closed_with_token_expired_when_its_origin_token_expires(stack: LocalStack) -> None:
    origin = await reader_token(stack, ttl=3)
    origin_exp = claims_of(origin.token)["exp"]
    async with aiohttp.ClientSession() as http:
        ws = await open_socket(http, stack, origin.token)
        closed = await until_closed(ws, within=origin_exp + LEEWAY + 10 - time.time())
        ended = time.time()
    assert closed.type is aiohttp.WSMsgType.CLOSE
    assert (closed.data, closed.extra) == (1008, "token expired: reconnect with a fresh token")
    assert ended >= origin_exp, "closed before the origin token expired"


async def test_sockets_of_the_hosts_own_anonymous_tokens_stay_open(tmp_path: Path) -> None:
    """`POST /v1/identity` tokens never expire (as on SpacetimeDB): exchanging one gives no end to the socket."""
    chat = start_host(
        tmp_path,
        module="autopilot_sync.examples.chat",
        database="chat",
        env={"AUTOPILOT_SYNC_HOST_TOKEN_LEEWAY_SECONDS": "0"},
    )
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{chat.url}/v1/identity") as response:
                anonymous = (await response.json())["token"]
            assert claims_of(anonymous)["exp"] is None
            async with http.post(
                f"{chat.url}/v1/identity/websocket-token", headers={"Authorization": f"Bearer {anonymous}"}
            ) as response:
                assert response.status == 200
                short = (await response.json())["token"]
            assert claims_of(short)["origin_exp"] is None
            async with http.ws_connect(
                f"{chat.url.replace('http', 'ws', 1)}/v1/database/chat/subscribe?token={short}", protocols=(V2,)
            ) as ws:
                await ws.receive()  # InitialConnection
                with pytest.raises(TimeoutError):
                    await until_closed(ws, within=3)
    finally:
        chat.stop()


async def test_a_token_for_another_database_is_refused(tmp_path: Path) -> None:
    other = LocalStack(tmp_path, control_env={"AUTOPILOT_SYNC_CONTROL_DATABASE": "another-db"})
    try:
        other.start_all(runtime=False)
        token = (await reader_token(other, ttl=60)).token
        assert claims_of(token)["aud"] == ["spacetimedb", "another-db"]
        async with aiohttp.ClientSession() as http:
            status, body = await exchange(http, other, token)
            assert status == 401
            assert body.startswith("token is not for this database"), body
            assert f"'{DATABASE}'" in body
            async with http.post(
                f"{other.host_url}/v1/database/{DATABASE}/sql",
                data="SELECT * FROM stream_head",
                headers={"Authorization": f"Bearer {token}"},
            ) as response:
                assert response.status == 401
                assert (await response.text()).startswith("token is not for this database")
            async with http.post(f"{other.host_url}/v1/identity") as response:
                anonymous = (await response.json())["token"]
            status, body = await exchange(http, other, anonymous)
            assert status == 200, f"the host's own anonymous token was refused: {body}"
    finally:
        other.stop_all()
