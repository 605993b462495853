"""The HTTP API over a real socket: every route, every documented status code and body."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from autopilot_sync.auth.claims import parse_unverified
from autopilot_sync.bindings.context import ReducerContext
from autopilot_sync.bindings.module import Module
from autopilot_sync.bindings.reducers import ReducerError
from autopilot_sync.host.auth.tokens import SigningKey, TokenService
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.engine import HostEngine
from autopilot_sync.host.http_api import add_http_routes
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import moduledef
from autopilot_sync.spacetime.identity import identity_from_claims
from autopilot_sync.spacetime.values import Identity

DB = "notes-test"
MAX_BODY = 4096

module = Module("notes")
note = module.table(
    "note",
    [("id", at.U64), ("author", at.IDENTITY), ("text", at.STRING), ("tag", at.option(at.STRING))],
    primary_key="id",
    auto_inc=("id",),
)
LIFECYCLE_LOG: list[tuple[str, Caller]] = []


@module.reducer(("text", at.STRING), ("tag", at.option(at.STRING)))
def add_note(ctx: ReducerContext, text: str, tag: str | None) -> None:
    if text == "bad":
        raise ReducerError("bad_text: notes may not say bad")
    ctx.db["note"].insert(note.row_class(0, ctx.sender, text, tag))


@module.reducer()
def explode(ctx: ReducerContext) -> None:
    raise RuntimeError("boom")


@module.client_connected
def on_connect(ctx: ReducerContext) -> None:
    LIFECYCLE_LOG.append(("connect", ctx.caller))
    if ctx.claims.get("sub") == "blocked":
        raise ReducerError("blocked users may not connect")


@module.client_disconnected
def on_disconnect(ctx: ReducerContext) -> None:
    LIFECYCLE_LOG.append(("disconnect", ctx.caller))


@dataclass
class Host:
    url: str
    engine: HostEngine
    tokens: TokenService
    http: aiohttp.ClientSession

    def token_for(self, sub: str, **extra: Any) -> str:
        return self.tokens.key.sign({"iss": "localhost", "sub": sub, "iat": int(time.time()), **extra})

    def notes(self) -> list[tuple[Any, ...]]:
        return sorted(self.engine.datastore["note"].rows.values())


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[Host]:
    LIFECYCLE_LOG.clear()
    engine = HostEngine(module, tmp_path / "data", DB)
    await engine.start()
    tokens = TokenService(SigningKey.load_or_create(tmp_path / "data"))
    app = web.Application()
    add_http_routes(app, engine, tokens, max_body_bytes=MAX_BODY)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as http:
        yield Host(f"http://127.0.0.1:{port}", engine, tokens, http)
    await runner.cleanup()
    await engine.stop()


async def call(host: Host, reducer: str, body: Any, token: str | None = None, db: str = DB) -> tuple[int, str, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    async with host.http.post(f"{host.url}/v1/database/{db}/call/{reducer}", data=data, headers=headers) as r:
        return r.status, await r.text(), r.headers


# ----- /v1/identity -----


async def test_post_identity_mints_a_verifiable_identity(host: Host) -> None:
    async with host.http.post(f"{host.url}/v1/identity") as r:
        assert r.status == 200
        body = await r.json()
    assert set(body) == {"identity", "token"}
    _, claims = parse_unverified(body["token"])
    assert body["identity"] == identity_from_claims("localhost", claims["sub"]).hex
    assert claims["exp"] is None
    assert (await host.tokens.verify(body["token"])).identity.hex == body["identity"]


async def test_public_key_is_the_pem_that_verifies_host_tokens(host: Host) -> None:
    async with host.http.get(f"{host.url}/v1/identity/public-key") as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "application/pem-certificate-chain"
        pem = await r.read()
    assert pem == host.tokens.public_key_pem and pem.startswith(b"-----BEGIN PUBLIC KEY-----")


async def test_websocket_token_needs_auth_and_lives_60s(host: Host) -> None:
    async with host.http.post(f"{host.url}/v1/identity/websocket-token") as r:
        assert r.status == 401
        assert await r.text() == "Authorization required"
    token = host.token_for("alice", scope="sync.subscribe")
    async with host.http.post(
        f"{host.url}/v1/identity/websocket-token", headers={"Authorization": f"Bearer {token}"}
    ) as r:
        assert r.status == 200
        short = (await r.json())["token"]
    _, claims = parse_unverified(short)
    assert claims["exp"] == claims["iat"] + 60
    assert claims["sub"] == "alice" and claims["scope"] == "sync.subscribe"
    async with host.http.post(f"{host.url}/v1/identity/websocket-token?token={token}") as r:
        assert r.status == 200


async def test_websocket_token_with_a_bad_token_is_401(host: Host) -> None:
    forged = SigningKey.generate().sign({"iss": "localhost", "sub": "x", "iat": int(time.time())})
    async with host.http.post(
        f"{host.url}/v1/identity/websocket-token", headers={"Authorization": f"Bearer {forged}"}
    ) as r:
        assert r.status == 401
        assert await r.text() == "Authorization failed: token not signed by this instance"


async def test_ping(host: Host) -> None:
    async with host.http.get(f"{host.url}/v1/ping") as r:
        assert r.status == 200
        assert await r.read() == b""


# ----- reducer calls -----


async def test_call_commits_and_returns_empty_200_with_identity_headers(host: Host) -> None:
    token = host.token_for("alice")
    status, body, headers = await call(host, "add_note", ["hello", {"some": "t"}], token)
    assert (status, body) == (200, "")
    alice = identity_from_claims("localhost", "alice")
    assert headers["spacetime-identity"] == alice.hex
    assert headers["spacetime-identity-token"] == token
    assert [(r[1], r[2], r[3]) for r in host.notes()] == [(alice, "hello", "t")]


async def test_call_runs_connect_before_and_disconnect_after_with_the_callers_claims(host: Host) -> None:
    await call(host, "add_note", ["x", None], host.token_for("alice", role="writer"))
    assert [kind for kind, _ in LIFECYCLE_LOG] == ["connect", "disconnect"]
    connected, disconnected = LIFECYCLE_LOG[0][1], LIFECYCLE_LOG[1][1]
    assert connected.connection_id is not None and connected.connection_id == disconnected.connection_id
    assert connected.claims["role"] == "writer"


async def test_anonymous_call_mints_an_identity_in_the_headers(host: Host) -> None:
    status, _, headers = await call(host, "add_note", ["anon", None])
    assert status == 200
    minted = await host.tokens.verify(headers["spacetime-identity-token"])
    assert minted.identity == Identity.from_hex(headers["spacetime-identity"])
    assert host.notes()[0][1] == minted.identity


async def test_reducer_error_is_530_with_the_message_and_rolls_back(host: Host) -> None:
    status, body, _ = await call(host, "add_note", ["bad", None], host.token_for("alice"))
    assert (status, body) == (530, "bad_text: notes may not say bad")
    assert host.notes() == []
    assert [kind for kind, _ in LIFECYCLE_LOG] == ["connect", "disconnect"]


async def test_reducer_panic_is_530(host: Host) -> None:
    status, body, _ = await call(host, "explode", [])
    assert status == 530 and "boom" in body


async def test_rejected_connection_is_403_and_the_reducer_never_runs(host: Host) -> None:
    status, body, _ = await call(host, "add_note", ["x", None], host.token_for("blocked"))
    assert (status, body) == (403, "blocked users may not connect")
    assert host.notes() == []


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([1, None], "at $[0]: expected string, got number 1"),
        (["x"], "at $: expected 2 elements"),
        (["x", {"maybe": 1}], "at $[1]"),
        ({"text": "x"}, "missing field 'tag'"),
        ("not json", "expected valid JSON"),
    ],
)
async def test_bad_arguments_are_400_with_the_path(host: Host, args: Any, fragment: str) -> None:
    status, body, _ = await call(host, "add_note", args)
    assert status == 400
    assert body.startswith("invalid arguments for reducer add_note: ")
    assert fragment in body
    assert host.notes() == []


async def test_arguments_by_name_are_accepted(host: Host) -> None:
    status, _, _ = await call(host, "add_note", {"text": "named", "tag": {"none": []}})
    assert status == 200


async def test_lifecycle_reducers_cannot_be_called(host: Host) -> None:
    status, body, _ = await call(host, "on_connect", [])
    assert status == 404  # lifecycle reducers are registered under their hook name
    status, body, _ = await call(host, "client_connected", [])
    assert (status, body) == (400, "can't directly call special OnConnect lifecycle reducer")


async def test_unknown_reducer_is_404(host: Host) -> None:
    status, body, _ = await call(host, "nope", [])
    assert (status, body) == (404, "no such reducer: nope")


async def test_unknown_database_is_404_and_bad_name_is_400(host: Host) -> None:
    status, body, headers = await call(host, "add_note", ["x", None], db="other-db")
    assert (status, body) == (404, "`other-db` not found")
    assert "spacetime-identity" in headers
    status, body, _ = await call(host, "add_note", ["x", None], db="c2" + "00" * 31)
    assert (status, body) == (404, "No such database.")
    status, body, _ = await call(host, "add_note", ["x", None], db="Bad_Name")
    assert status == 400 and "database name" in body


async def test_bad_token_is_401_before_anything_else(host: Host) -> None:
    expired = host.token_for("alice", exp=int(time.time()) - 3600)
    status, body, _ = await call(host, "add_note", ["x", None], expired, db="missing-db")
    assert (status, body) == (401, "token has expired")
    status, body, _ = await call(host, "add_note", ["x", None], "garbage")
    assert status == 401
    assert LIFECYCLE_LOG == []


async def test_non_bearer_authorization_is_400(host: Host) -> None:
    async with host.http.post(
        f"{host.url}/v1/database/{DB}/call/add_note",
        data='["x", null]',
        headers={"Content-Type": "application/json", "Authorization": "Basic dXNlcjpwYXNz"},
    ) as r:
        assert r.status == 400
        assert await r.text() == "Authorization is invalid: malformed token"


async def test_content_type_must_be_json(host: Host) -> None:
    url = f"{host.url}/v1/database/{DB}/call/add_note"
    async with host.http.post(url, data=b'["x", null]', headers={"Content-Type": "text/plain"}) as r:
        assert r.status == 415
    async with host.http.post(url, data=b'["x", null]', skip_auto_headers=["Content-Type"]) as r:
        assert r.status == 400
        assert "content-type" in await r.text()


async def test_body_over_the_limit_is_413(host: Host) -> None:
    status, _, _ = await call(host, "add_note", ["x" * MAX_BODY, None])
    assert status == 413

    async def chunks() -> AsyncIterator[bytes]:
        yield b'["'
        for _ in range(10):
            yield b"y" * 1000
        yield b'", null]'

    async with host.http.post(
        f"{host.url}/v1/database/{DB}/call/add_note", data=chunks(), headers={"Content-Type": "application/json"}
    ) as r:
        assert r.status == 413
    assert host.notes() == []


async def test_non_utf8_body_is_400(host: Host) -> None:
    status, body, _ = await call(host, "add_note", b'["\xff", null]')
    assert (status, body) == (400, "Request body didn't contain valid UTF-8")


# ----- schema and sql -----


async def test_schema_v9_and_v10_are_the_module_definition(host: Host) -> None:
    async with host.http.get(f"{host.url}/v1/database/{DB}/schema?version=9") as r:
        assert r.status == 200
        assert "spacetime-identity" in r.headers
        body = await r.json()
    assert body == module.schema_json()
    async with host.http.get(f"{host.url}/v1/database/{DB}/schema?version=10") as r:
        assert r.status == 200
        assert "spacetime-identity" in r.headers
        assert await r.json() == moduledef.to_json(module.module_def(), 10)
    async with host.http.get(f"{host.url}/v1/database/{DB}/schema") as r:
        assert (r.status, await r.text()) == (400, "Failed to deserialize query string: missing field `version`")
    async with host.http.get(f"{host.url}/v1/database/{DB}/schema?version=11") as r:
        assert (r.status, await r.text()) == (
            400,
            "Failed to deserialize query string: unknown variant `11`, expected `9` or `10`",
        )
    async with host.http.get(f"{host.url}/v1/database/nope/schema?version=9") as r:
        assert r.status == 404


async def test_sql_answers_selects_and_rejects_the_rest(host: Host) -> None:
    async with host.http.post(f"{host.url}/v1/database/{DB}/sql", data="SELECT COUNT(*) AS n FROM note") as r:
        assert r.status == 200, await r.text()
        assert "spacetime-execution-duration-micros" in r.headers
        (result,) = await r.json()
    assert result["rows"] == [[0]]
    assert [e["name"] for e in result["schema"]["elements"]] == [{"some": "n"}]
    async with host.http.post(f"{host.url}/v1/database/{DB}/sql", data="DELETE FROM note") as r:
        assert r.status == 400
        assert await r.text()
    async with host.http.post(f"{host.url}/v1/database/{DB}/sql", data="SELECT * FROM nope") as r:
        assert r.status == 400
