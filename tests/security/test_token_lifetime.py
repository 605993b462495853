"""Tokens never outlive their origin, and a token is for one database: attacks on real host and control processes.

Control issues tokens of a few seconds (its minimum lifetime and refresh margin are settings) and the host's clock
leeway is one second, so every expiry below happens within seconds. Each test talks to the processes only over HTTP
and WebSocket, as an outsider would.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from autopilot_sync.control.client import SessionToken, fetch_session_token
from autopilot_sync.devtools.processes import ServiceProcess, start_host, start_service
from autopilot_sync.devtools.stack import DATABASE, LocalStack
from autopilot_sync.nostr.keys import SecretKey
from autopilot_sync.runtime.access import producer_session
from autopilot_sync.settings.control import ControlSettings

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
    assert stack.host is not None
    # The host logs the close before sending it, but its output reaches us through a reader thread: give it a moment.
    for _ in range(100):
        if any("its token expired" in line for line in stack.host.output):
            break
        await asyncio.sleep(0.05)
    assert any("its token expired" in line for line in stack.host.output), stack.host.tail()


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
        # Not start_all: naming control as the trusted issuer needs a token for this database, which this
        # deliberately misconfigured control cannot issue (the module's issuer rule is not what is tested here).
        other.start_host()
        other.start_control()
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


def test_refresh_margin_must_be_below_the_shortest_lifetime(tmp_path: Path) -> None:
    common = {"public_url": "http://127.0.0.1:1", "signing_key_path": tmp_path / "k.pem"}
    assert ControlSettings(**common, token_ttl_min_seconds=2, token_refresh_margin_seconds=1).token_ttl_min_seconds == 2
    with pytest.raises(ValueError, match="below the shortest token lifetime"):
        ControlSettings(**common, token_ttl_min_seconds=2, token_refresh_margin_seconds=2)


#: Lifetime of every token in the refresh test, and how long before expiry control tells clients to refresh.
TTL, MARGIN = 6, 3
RUN = "refresh"
STREAM = f"runtime.run.{RUN}.events"


def desktop_states(desktop: ServiceProcess) -> list[tuple[float, dict[str, Any]]]:
    """(time, state) of every JSON line a headless desktop printed."""
    lines = [json.loads(line) for line in list(desktop.output) if line.startswith('{"t":')]
    return [(line["t"], line["state"]) for line in lines]


def followed(state: dict[str, Any]) -> dict[str, Any]:
    return next((s for s in state["streams"] if s["stream_id"] == STREAM), {})


def tokens_issued(metrics: str, client_kind: str) -> float:
    found = re.search(
        rf'autopilot_sync_control_tokens_issued_total{{client_kind="{client_kind}"}} ([0-9.e+]+)', metrics
    )
    return float(found.group(1)) if found else 0.0


async def test_runtime_and_desktop_refresh_short_tokens_while_events_flow_without_loss_or_duplicate(
    tmp_path: Path,
) -> None:
    """Tokens of 6 s, refreshed 3 s before expiry, for 20 s of publishing: runtime → host → desktop never stops."""
    stack = LocalStack(
        tmp_path,
        host_env={"AUTOPILOT_SYNC_HOST_TOKEN_LEEWAY_SECONDS": str(LEEWAY)},
        control_env={
            "AUTOPILOT_SYNC_CONTROL_TOKEN_TTL_MIN_SECONDS": str(TTL),
            "AUTOPILOT_SYNC_CONTROL_TOKEN_TTL_DEFAULT_SECONDS": str(TTL),
            "AUTOPILOT_SYNC_CONTROL_TOKEN_REFRESH_MARGIN_SECONDS": str(MARGIN),
        },
        runtime_env={
            "AUTOPILOT_SYNC_RUNTIME_TOKEN_TTL_SECONDS": str(TTL),
            "AUTOPILOT_SYNC_RUNTIME_RETRY_CAP_SECONDS": "1",
        },
    )
    desktop: ServiceProcess | None = None
    try:
        stack.start_all()
        config_dir = tmp_path / "desktop"
        desktop = start_service(
            "desktop",
            ["--headless"],
            env={**stack.desktop_env(config_dir), "AUTOPILOT_SYNC_DESKTOP_STREAMS": STREAM},
            wait=False,
        )
        promised: list[int] = []
        async with producer_session(stack.producer_socket) as http:  # the local producer: the runtime's socket
            started = time.monotonic()
            while time.monotonic() - started < 4 * TTL:
                events = [{"kind": "run.message.delta", "data": {"n": len(promised) + i}} for i in range(2)]
                async with http.post(f"{stack.runtime_url}/v1/runs/{RUN}/events", json={"events": events}) as answer:
                    body = await answer.json()
                    assert answer.status == 200, body
                promised += [item["seq"] for item in body["appended"]]
                await asyncio.sleep(0.25)
        async with aiohttp.ClientSession() as http, http.get(f"{stack.control_url}/metrics") as answer:
            metrics = await answer.text()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = desktop_states(desktop)
            if states and followed(states[-1][1]).get("applied") == len(promised):
                break
            assert desktop.process.poll() is None, desktop.tail(40)
            await asyncio.sleep(0.2)
        states = desktop_states(desktop)
        assert followed(states[-1][1]).get("applied") == len(promised), desktop.tail(40)
        with sqlite3.connect(config_dir / f"{DATABASE}.sqlite3") as db:
            applied = [
                row[0]
                for row in db.execute("SELECT seq FROM applied_event WHERE stream_id = ? ORDER BY seq", (STREAM,))
            ]
        # No loss, no duplicate, in order: every promised event applied exactly once.
        assert applied == promised == list(range(1, len(promised) + 1))
        last = followed(states[-1][1])
        assert (last["gaps"], last["duplicates"]) == (0, 0)
        # Both clients refreshed several times, before the host had to close their sockets.
        assert states[-1][1]["connection"]["token_fetches"] >= 3
        assert tokens_issued(metrics, "runtime") >= 3, metrics
        reasons = {state["connection"]["reason"] for _, state in states}
        assert not any("1008" in (reason or "") for reason in reasons), reasons
        assert stack.host is not None
        expired = [line for line in stack.host.output if "its token expired" in line]
        assert not expired, f"the host had to close sockets whose token expired: {expired}"
        # No stall: while events were published, the desktop never went a token lifetime without applying one.
        progress = [
            t
            for (_, before), (t, state) in itertools.pairwise(states)
            if followed(state).get("applied", 0) > followed(before).get("applied", 0)
        ]
        assert progress and max(b - a for a, b in itertools.pairwise(progress)) < TTL, progress
    finally:
        if desktop is not None:
            desktop.stop()
        stack.stop_all()
