"""The issue's "done when": real `autopilot-sync control` and `autopilot-sync host` processes. A Nostr key signs a
proof, gets a token, and the host admits it with presence showing exactly that key; other keys and forged tokens
cannot appear as it."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from control_helpers import PRODUCER, READER, decode_jwt

from autopilot_sync.control.client import SessionToken, fetch_session_token, token_proof
from autopilot_sync.control.keys import SigningKey
from autopilot_sync.devtools.processes import ServiceProcess, free_port, start_host, start_service
from autopilot_sync.devtools.trust import call_set_trusted_issuer
from autopilot_sync.nostr.keys import SecretKey
from autopilot_sync.nostr.nip98 import encode_authorization_header
from autopilot_sync.spacetime.frames import decode_server_frame, split_server_body
from autopilot_sync.spacetime.identity import identity_from_claims
from autopilot_sync.spacetime.messages import (
    InitialConnection,
    ServerMessage,
    Subscribe,
    SubscribeApplied,
    TransactionUpdate,
    encode_client_message,
)
from autopilot_sync.sync_bindings import ActiveConnection

DATABASE = "autopilot-sync"
#: the database owner, who names control as the trusted issuer (the module fails closed until someone does)
OWNER = SecretKey.from_hex("33" * 32)
READ = ("sync.subscribe", "sync.checkpoint.write")
V2_PROTOCOL = "v2.bsatn.spacetimedb"
OTHER = SecretKey.from_hex("33" * 32)


@dataclass
class System:
    control_url: str
    host_url: str

    @property
    def heartbeat_url(self) -> str:
        return f"{self.host_url}/v1/database/{DATABASE}/call/heartbeat"

    @property
    def subscribe_url(self) -> str:
        return f"{self.host_url}/v1/database/{DATABASE}/subscribe"

    async def token(self, secret: SecretKey, scopes: tuple[str, ...] = READ, kind: str = "desktop") -> SessionToken:
        return await fetch_session_token(self.control_url, secret, scopes, ("*",), None, kind)


async def _trust_control(control_url: str, host_url: str) -> None:
    """Name control as the sync module's trusted issuer, as the owner (every start of a fresh database does)."""
    owner = await fetch_session_token(control_url, OWNER, READ, ("*",), None, "owner")
    await call_set_trusted_issuer(host_url, DATABASE, owner.token, control_url)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[System]:
    control_url = f"http://127.0.0.1:{free_port()}"
    children: list[ServiceProcess] = []
    try:
        children.append(
            start_service(
                "control",
                env={
                    "AUTOPILOT_SYNC_CONTROL_LISTEN": control_url.removeprefix("http://"),
                    "AUTOPILOT_SYNC_CONTROL_PUBLIC_URL": control_url,
                    "AUTOPILOT_SYNC_CONTROL_SIGNING_KEY_PATH": str(tmp_path / "control" / "signing.pem"),
                    "AUTOPILOT_SYNC_CONTROL_APPEND_ALLOWLIST": PRODUCER.public_key().hex,
                },
            )
        )
        host = start_host(
            tmp_path / "host",
            module="autopilot_sync.module",
            env={
                "AUTOPILOT_SYNC_HOST_TRUSTED_ISSUERS": control_url,
                "AUTOPILOT_SYNC_HOST_FSYNC": "false",
                "AUTOPILOT_SYNC_HOST_OWNER_IDENTITY": identity_from_claims(control_url, OWNER.public_key().hex).hex,
            },
        )
        children.append(host)
        asyncio.run(_trust_control(control_url, host.url))
        yield System(control_url, host.url)
    finally:
        for child in reversed(children):
            child.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _heartbeat(http: aiohttp.ClientSession, system: System, token: str) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with http.post(system.heartbeat_url, data="[]", headers=headers) as response:
        return response.status, await response.text()


def _forge_claims(token: str, **changes: Any) -> str:
    """The same header and signature over edited claims."""
    header, _, signature = token.split(".")
    claims = decode_jwt(token)[1] | changes
    raw = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{raw}.{signature}"


def _signed_by_a_stranger(token: str) -> str:
    """The same header (control's kid) and claims, signed by a key control never published."""
    header, claims = decode_jwt(token)
    stranger = SigningKey.generate()
    return dataclasses.replace(stranger, kid=header["kid"]).sign(claims)


async def test_token_from_control_admits_a_heartbeat_and_scopes_are_enforced(
    processes: System, http: aiohttp.ClientSession
) -> None:
    reader = await processes.token(READER)
    assert (await _heartbeat(http, processes, reader.token))[0] == 200
    producer = await processes.token(PRODUCER, ("sync.append",), "runtime")
    assert (await _heartbeat(http, processes, producer.token))[0] == 200
    checkpoint_only = await processes.token(READER, ("sync.checkpoint.write",))
    status, text = await _heartbeat(http, processes, checkpoint_only.token)
    assert status == 403, text
    assert "sync.subscribe" in text


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda t: _forge_claims(t, sub=OTHER.public_key().hex), id="claims edited"),
        pytest.param(lambda t: _forge_claims(t, scopes=["sync.append"]), id="scopes widened"),
        pytest.param(_signed_by_a_stranger, id="signed by another key"),
        pytest.param(lambda t: _forge_claims(t, exp=int(time.time()) - 3600), id="expiry moved"),
    ],
)
async def test_forged_tokens_are_refused_with_401(processes: System, http: aiohttp.ClientSession, forge: Any) -> None:
    genuine = await processes.token(READER)
    status, _ = await _heartbeat(http, processes, forge(genuine.token))
    assert status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(
            processes.subscribe_url,
            protocols=(V2_PROTOCOL,),
            headers={"Authorization": f"Bearer {forge(genuine.token)}"},
        )
    assert refused.value.status == 401


async def test_another_key_cannot_get_a_token_in_the_first_keys_name(processes: System) -> None:
    body = b'{"scopes":["sync.subscribe"],"streams":["*"],"client_kind":"desktop"}'
    url = f"{processes.control_url}/api/sync/token"
    proof = token_proof(OTHER, url, body, int(time.time()))
    claimed = dataclasses.replace(proof, pubkey=READER.public_key().hex)
    claimed = dataclasses.replace(claimed, id=claimed.computed_id())
    headers = {"Authorization": encode_authorization_header(claimed), "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as response:
        assert response.status == 401
        assert (await response.json())["error"] == "bad_signature"


class _Socket:
    """A v2 BSATN WebSocket to the host, decoded with the project's wire layer."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.inbox: list[ServerMessage] = []

    async def recv(self) -> ServerMessage:
        while not self.inbox:
            message = await self.ws.receive(timeout=10)
            assert message.type is aiohttp.WSMsgType.BINARY, message
            self.inbox.extend(split_server_body(decode_server_frame(message.data)))
        return self.inbox.pop(0)

    async def expect(self, kind: type[Any]) -> Any:
        while True:
            message = await self.recv()
            if isinstance(message, kind):
                return message
            assert isinstance(message, TransactionUpdate), message


async def _connect(http: aiohttp.ClientSession, system: System, session: SessionToken) -> _Socket:
    ws = await http.ws_connect(
        system.subscribe_url, protocols=(V2_PROTOCOL,), headers={"Authorization": f"Bearer {session.token}"}
    )
    assert ws.protocol == V2_PROTOCOL
    return _Socket(ws)


def _presence_rows(applied: SubscribeApplied) -> list[ActiveConnection]:
    return [ActiveConnection.decode(row) for table in applied.rows.tables for row in table.rows]


async def test_presence_shows_the_key_that_signed_and_no_other(processes: System, http: aiohttp.ClientSession) -> None:
    first = await processes.token(READER)
    a = await _connect(http, processes, first)
    initial = await a.expect(InitialConnection)
    assert initial.identity.hex == first.identity

    second = await processes.token(OTHER, kind="cli")
    b = await _connect(http, processes, second)
    assert (await b.expect(InitialConnection)).identity.hex == second.identity

    await b.ws.send_bytes(encode_client_message(Subscribe(1, 1, ("SELECT * FROM active_connection",))))
    rows = _presence_rows(await b.expect(SubscribeApplied))
    by_key = {row.nostr_pubkey_hex: row for row in rows}
    assert set(by_key) == {READER.public_key().hex, OTHER.public_key().hex}
    assert by_key[READER.public_key().hex].npub == READER.public_key().npub
    assert by_key[READER.public_key().hex].identity.hex == first.identity
    assert by_key[READER.public_key().hex].client_kind == "desktop"
    assert by_key[OTHER.public_key().hex].npub == OTHER.public_key().npub
    assert by_key[OTHER.public_key().hex].identity.hex == second.identity
    assert by_key[OTHER.public_key().hex].client_kind == "cli"
    await a.ws.close()
    await b.ws.close()
