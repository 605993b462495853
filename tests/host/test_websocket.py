"""The WebSocket endpoint over real sockets: negotiation, the message flows, and clients that misbehave.

Every hostile-client test also runs a well-behaved client beside it and checks it still gets its updates.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import gzip
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import brotli
import pytest
from aiohttp import web

from autopilot_sync.examples.chat import module
from autopilot_sync.host.auth.tokens import SigningKey, TokenService
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.host.http_api import add_http_routes
from autopilot_sync.host.session import CloseReason
from autopilot_sync.host.subscriptions import SubscriptionLimits
from autopilot_sync.host.websocket import WebSocketHub, WebSocketOptions, add_websocket_route
from autopilot_sync.host.ws_handshake import V2_PROTOCOL, V3_PROTOCOL
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime.frames import encode_v3_client_frames, split_server_body
from autopilot_sync.spacetime.identity import identity_from_claims
from autopilot_sync.spacetime.messages import (
    CallProcedure,
    CallProcedureFlags,
    CallReducer,
    CallReducerFlags,
    ClientMessage,
    InitialConnection,
    OneOffQuery,
    OneOffQueryResult,
    PersistentTableRows,
    ProcedureInternalError,
    ProcedureResult,
    QueryRows,
    ReducerErr,
    ReducerInternalError,
    ReducerOk,
    ReducerResult,
    ServerMessage,
    Subscribe,
    SubscribeApplied,
    SubscriptionError,
    TransactionUpdate,
    Unsubscribe,
    UnsubscribeApplied,
    UnsubscribeFlags,
    encode_client_message,
)
from autopilot_sync.spacetime.values import ConnectionId

DB = "chat"
PERSON = module.tables["person"]
PERSON_CODEC = bsatn.codec(PERSON.row_type)


@dataclass
class Host:
    engine: HostEngine
    tokens: TokenService
    base: str
    session: aiohttp.ClientSession
    hub: WebSocketHub

    @property
    def url(self) -> str:
        return f"{self.base}/v1/database/{DB}/subscribe"

    def online(self) -> int:
        return len(self.engine.datastore["online"].rows)

    def is_online(self, connection_id: ConnectionId) -> bool:
        return any(row[0] == connection_id for row in self.engine.datastore["online"].rows.values())


OPTIONS = WebSocketOptions(
    ping_interval=0.2,
    idle_timeout=1.0,
    max_message_bytes=64 * 1024,
    close_timeout=0.5,
    subscription_limits=SubscriptionLimits(max_query_sets_per_connection=2000, max_queries_per_connection=2000),
)


async def _host(tmp_path: Path, options: WebSocketOptions) -> AsyncIterator[Host]:
    engine = HostEngine(module, tmp_path, DB, EngineConfig(fsync=False))
    await engine.start()
    tokens = TokenService(SigningKey.generate())
    app = web.Application()
    add_http_routes(app, engine, tokens)
    hub = add_websocket_route(app, engine, tokens, options=options)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    async with aiohttp.ClientSession() as session:
        yield Host(engine, tokens, f"http://{host}:{port}", session, hub)
    await runner.cleanup()
    await engine.stop()


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[Host]:
    async for running in _host(tmp_path, OPTIONS):
        yield running


class Client:
    """A test client speaking the protocol by hand: encodes client messages, decodes (and splits) server frames."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.inbox: list[ServerMessage] = []
        self.frames = 0
        self.tags: list[int] = []

    async def send(self, *messages: ClientMessage) -> None:
        if self.ws.protocol == V3_PROTOCOL:
            for frame in encode_v3_client_frames(messages, cap=16 * 1024):
                await self.ws.send_bytes(frame)
        else:
            for message in messages:
                await self.ws.send_bytes(encode_client_message(message))

    async def recv(self, within: float | None = 5.0) -> ServerMessage:
        """The next message (None: waited for without a bound)."""
        while not self.inbox:
            msg = await self.ws.receive(timeout=within)
            if msg.type is not aiohttp.WSMsgType.BINARY:
                raise AssertionError(f"expected a binary frame, got {msg.type} {msg.data!r} {msg.extra!r}")
            self.frames += 1
            data: bytes = msg.data
            self.tags.append(data[0])
            body = data[1:]
            if data[0] == 1:
                body = brotli.decompress(body)
            elif data[0] == 2:
                body = gzip.decompress(body)
            self.inbox.extend(split_server_body(body))
        return self.inbox.pop(0)

    async def expect(self, kind: type[Any], within: float = 5.0) -> Any:
        message = await self.recv(within)
        assert isinstance(message, kind), f"expected {kind.__name__}, got {message!r:.300}"
        return message

    async def call(self, request_id: int, reducer: str, *args: Any) -> None:
        params = module.reducers[reducer].params
        await self.send(CallReducer(request_id, CallReducerFlags.DEFAULT, reducer, bsatn.codec(params).encode(args)))

    async def closed(self, within: float = 5.0) -> tuple[int | None, str]:
        while True:
            msg = await self.ws.receive(timeout=within)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return self.ws.close_code, str(msg.extra or "")


async def connect(host: Host, protocols: tuple[str, ...] = (V3_PROTOCOL, V2_PROTOCOL), **params: str) -> Client:
    ws = await host.session.ws_connect(host.url, protocols=protocols, params=params or None, autoping=True)
    client = Client(ws)
    await client.expect(InitialConnection)
    return client


def people(rows: Any) -> list[tuple[Any, ...]]:
    return [tuple(PERSON_CODEC.decode(r)) for r in rows]


def single_table(rows: QueryRows) -> list[tuple[Any, ...]]:
    (table,) = rows.tables
    return people(table.rows)


async def wait_for(predicate: Any, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


# ----- negotiation and the first message -----


async def test_server_prefers_v3_and_falls_back_to_v2(host: Host) -> None:
    both = await host.session.ws_connect(host.url, protocols=(V2_PROTOCOL, V3_PROTOCOL))
    assert both.protocol == V3_PROTOCOL
    await both.close()
    only_v2 = await host.session.ws_connect(host.url, protocols=(V2_PROTOCOL,))
    assert only_v2.protocol == V2_PROTOCOL
    await only_v2.close()
    # SpacetimeDB's `select_protocol` order: v3, v2, then v1 BSATN before v1 JSON.
    with_v1 = await host.session.ws_connect(host.url, protocols=("v1.json.spacetimedb", "v1.bsatn.spacetimedb"))
    assert with_v1.protocol == "v1.bsatn.spacetimedb"
    await with_v1.close()
    over_v1 = await host.session.ws_connect(host.url, protocols=("v1.bsatn.spacetimedb", V2_PROTOCOL))
    assert over_v1.protocol == V2_PROTOCOL
    await over_v1.close()


async def test_no_acceptable_protocol_is_400_before_upgrade(host: Host) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await host.session.ws_connect(host.url, protocols=("v4.bsatn.spacetimedb", "v1.text.spacetimedb"))
    assert caught.value.status == 400
    async with host.session.get(
        host.url,
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        },
    ) as response:
        assert response.status == 400
        assert await response.text() == "no valid protocol selected"


async def test_bad_query_parameters_and_unknown_database(host: Host) -> None:
    for params in ({"compression": "Zstd"}, {"connection_id": "xyz"}, {"connection_id": "0" * 32}, {"confirmed": "1"}):
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await host.session.ws_connect(host.url, protocols=(V3_PROTOCOL,), params=params)
        assert caught.value.status == 400, params
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await host.session.ws_connect(f"{host.base}/v1/database/other/subscribe", protocols=(V3_PROTOCOL,))
    assert caught.value.status == 404
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await host.session.ws_connect(host.url, protocols=(V3_PROTOCOL,), params={"token": "garbage"})
    assert caught.value.status == 401


async def test_initial_connection_carries_identity_connection_id_and_token(host: Host) -> None:
    token = host.tokens.mint_anonymous()
    ws = await host.session.ws_connect(
        host.url,
        protocols=(V3_PROTOCOL,),
        params={"connection_id": "00000000000000000000000000abcdef", "compression": "None"},
        headers={"Authorization": f"Bearer {token.token}"},
    )
    client = Client(ws)
    first = await client.expect(InitialConnection)
    assert first.identity == token.identity
    assert first.connection_id == ConnectionId(0xABCDEF)
    assert first.token == token.token
    await wait_for(lambda: host.online() == 1)
    anonymous = await connect(host)
    assert host.online() == 2
    await ws.close()
    await anonymous.ws.close()
    await wait_for(lambda: host.online() == 0)


async def test_connection_refused_by_client_connected_is_upgraded_then_closed_with_the_reason(host: Host) -> None:
    # crates/client-api/src/routes/subscribe.rs `handle_websocket`: upgrade first, then run client_connected and drop
    # the socket when it refuses; an SDK sees a disconnect, not a failed handshake. We also say why (1008 + reason).
    issuer = host.tokens.issuer
    claims = {
        "iss": issuer,
        "sub": "banned",
        "aud": list(host.tokens.audience),
        "iat": int(time.time()),
        "exp": None,
        "hex_identity": identity_from_claims(issuer, "banned").hex,
    }
    token = host.tokens.key.sign(claims)
    ws = await host.session.ws_connect(host.url, protocols=(V3_PROTOCOL,), params={"token": token})
    assert ws.protocol == V3_PROTOCOL  # upgraded: 101, not 403
    msg = await ws.receive(timeout=5)
    assert msg.type is aiohttp.WSMsgType.CLOSE, msg  # no InitialConnection first
    assert (ws.close_code, msg.extra) == (1008, "forbidden: this subject is banned")
    assert host.hub.rejections == {"client_connected": 1}
    assert host.online() == 0
    assert len(host.engine.datastore["st_client"].rows) == 0
    good = await connect(host)
    await good.call(1, "add_person", "still-here", 1)
    assert isinstance((await good.expect(ReducerResult)).result, ReducerOk)


@pytest.fixture
async def two_handshakes_host(tmp_path: Path) -> AsyncIterator[Host]:
    async for running in _host(tmp_path, dataclasses.replace(OPTIONS, max_pending_handshakes=2)):
        yield running


async def test_upgrades_beyond_the_handshake_limit_wait_for_a_slot_and_all_connect(
    two_handshakes_host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A reconnect storm: every upgrade past `max_pending_handshakes` waits before its 101, so no more than that many
    # sockets are between their upgrade and `InitialConnection` at once; a refused one gives its slot back.
    host = two_handshakes_host
    in_handshake = 0
    most = 0
    real_connect = host.engine.connect

    async def slow_connect(caller: Any, origin: Any = None) -> None:
        nonlocal in_handshake, most
        in_handshake += 1
        most = max(most, in_handshake)
        try:
            await asyncio.sleep(0.02)  # client_connected's durable wait, stretched so the handshakes overlap
            await real_connect(caller, origin)
        finally:
            in_handshake -= 1

    monkeypatch.setattr(host.engine, "connect", slow_connect)
    banned = host.tokens.key.sign(
        {
            "iss": host.tokens.issuer,
            "sub": "banned",
            "aud": list(host.tokens.audience),
            "iat": int(time.time()),
            "exp": None,
            "hex_identity": identity_from_claims(host.tokens.issuer, "banned").hex,
        }
    )
    refused = [
        await host.session.ws_connect(host.url, protocols=(V3_PROTOCOL,), params={"token": banned}) for _ in range(3)
    ]
    clients = await asyncio.gather(*(connect(host) for _ in range(12)))
    assert most == 2
    assert host.online() == 12
    assert host.hub.rejections == {"client_connected": 3}
    for client in clients:
        await client.ws.close()
    for ws in refused:
        await ws.close()


# ----- subscriptions and reducers -----


async def test_subscribe_applied_then_caller_result_and_others_update(host: Host) -> None:
    alice = await connect(host)
    bob = await connect(host, protocols=(V2_PROTOCOL,))
    await alice.call(1, "add_person", "ada", 36)
    await alice.expect(ReducerResult)
    await bob.send(Subscribe(7, 1, ("SELECT * FROM person",)))
    applied = await bob.expect(SubscribeApplied)
    assert (applied.request_id, applied.query_set_id) == (7, 1)
    assert single_table(applied.rows) == [(1, "ada", 36)]
    await alice.send(Subscribe(8, 42, ("SELECT * FROM person WHERE age > 40",)))
    assert single_table((await alice.expect(SubscribeApplied)).rows) == []

    await alice.call(2, "add_person", "grace", 85)
    result = await alice.expect(ReducerResult)
    assert result.request_id == 2 and isinstance(result.result, ReducerOk)
    (own,) = result.result.transaction_update.query_sets
    assert own.query_set_id == 42
    (table,) = own.tables
    (rows,) = table.rows
    assert isinstance(rows, PersistentTableRows)
    assert people(rows.inserts) == [(2, "grace", 85)] and people(rows.deletes) == []

    update = await bob.expect(TransactionUpdate)
    (qs,) = update.query_sets
    assert qs.query_set_id == 1
    assert people(qs.tables[0].rows[0].inserts) == [(2, "grace", 85)]  # type: ignore[union-attr]


async def test_update_is_delete_plus_insert_in_one_table_update(host: Host) -> None:
    client = await connect(host)
    await client.send(Subscribe(1, 1, ("SELECT * FROM person",)))
    await client.expect(SubscribeApplied)
    await client.call(1, "add_person", "ada", 36)
    await client.expect(ReducerResult)
    await client.call(2, "set_age", "ada", 37)
    result = await client.expect(ReducerResult)
    assert isinstance(result.result, ReducerOk)
    (qs,) = result.result.transaction_update.query_sets
    (table,) = qs.tables
    assert table.table_name == "person"
    (rows,) = table.rows
    assert isinstance(rows, PersistentTableRows)
    assert people(rows.inserts) == [(1, "ada", 37)]
    assert people(rows.deletes) == [(1, "ada", 36)]


async def test_reducer_errors_user_and_internal(host: Host) -> None:
    client = await connect(host)
    await client.call(1, "fail", "nope")
    result = await client.expect(ReducerResult)
    assert result.result == ReducerErr(b"\x04\x00\x00\x00nope")
    await client.call(2, "panic")
    result = await client.expect(ReducerResult)
    assert isinstance(result.result, ReducerInternalError) and "deliberate panic" in result.result.message
    await client.send(CallReducer(3, CallReducerFlags.DEFAULT, "no_such", b""))
    result = await client.expect(ReducerResult)
    assert result.result == ReducerInternalError("no such reducer")
    await client.send(CallReducer(4, CallReducerFlags.DEFAULT, "add_person", b"\x01"))
    result = await client.expect(ReducerResult)
    assert isinstance(result.result, ReducerInternalError) and "invalid arguments" in result.result.message
    await client.send(CallReducer(5, CallReducerFlags.DEFAULT, "client_connected", b""))
    result = await client.expect(ReducerResult)
    # crates/core/src/host/module_host.rs `ReducerCallError::LifecycleReducer`.
    assert result.result == ReducerInternalError("can't directly call special OnConnect lifecycle reducer")
    await client.send(CallProcedure(6, CallProcedureFlags.DEFAULT, "anything", b""))
    procedure = await client.expect(ProcedureResult)
    assert procedure.request_id == 6 and isinstance(procedure.status, ProcedureInternalError)
    # A committed call that writes nothing still answers Ok (no transaction, so no listener call).
    await client.call(7, "add_people", [])
    result = await client.expect(ReducerResult)
    assert result.request_id == 7 and result.result == ReducerOk(b"", TransactionUpdate(()))


async def test_unsubscribe_returns_dropped_rows_and_stops_updates(host: Host) -> None:
    client = await connect(host)
    await client.call(1, "add_person", "ada", 36)
    await client.expect(ReducerResult)
    await client.send(Subscribe(1, 5, ("SELECT * FROM person",)), Subscribe(2, 6, ("SELECT * FROM person",)))
    await client.expect(SubscribeApplied)
    await client.expect(SubscribeApplied)
    await client.send(Unsubscribe(3, 5, UnsubscribeFlags.SEND_DROPPED_ROWS), Unsubscribe(4, 6))
    dropped = await client.expect(UnsubscribeApplied)
    assert dropped.query_set_id == 5 and dropped.rows is not None
    assert single_table(dropped.rows) == [(1, "ada", 36)]
    plain = await client.expect(UnsubscribeApplied)
    assert plain.query_set_id == 6 and plain.rows is None
    await client.call(2, "add_person", "bob", 1)
    result = await client.expect(ReducerResult)
    assert isinstance(result.result, ReducerOk) and result.result.transaction_update.query_sets == ()
    await client.send(Unsubscribe(5, 99))
    assert isinstance(await client.expect(SubscriptionError), SubscriptionError)


async def test_one_off_query(host: Host) -> None:
    client = await connect(host)
    await client.call(1, "add_people", ["a", "b", "c"])
    await client.expect(ReducerResult)
    await client.send(OneOffQuery(9, "SELECT * FROM person WHERE name = 'b'"))
    result = await client.expect(OneOffQueryResult)
    assert result.request_id == 9 and isinstance(result.result, QueryRows)
    assert single_table(result.result) == [(2, "b", 0)]
    await client.send(OneOffQuery(10, "SELECT name FROM person"), OneOffQuery(11, "DELETE FROM person"))
    projection = await client.expect(OneOffQueryResult)
    assert isinstance(projection.result, str) and "projections" in projection.result
    dml = await client.expect(OneOffQueryResult)
    assert isinstance(dml.result, str) and "Non-SELECT" in dml.result


async def test_subscription_to_missing_table_is_an_error_and_the_connection_lives(host: Host) -> None:
    client = await connect(host)
    await client.send(Subscribe(1, 1, ("SELECT * FROM nope",)))
    error = await client.expect(SubscriptionError)
    assert error.request_id == 1 and error.query_set_id == 1 and "no such table" in error.error
    await client.send(Subscribe(2, 2, ("SELECT * FROM person WHERE age = 'old'",)))
    assert "cannot be parsed as type" in (await client.expect(SubscriptionError)).error
    await client.send(Subscribe(3, 3, ("SELECT * FROM st_client",)))
    assert "no such table" in (await client.expect(SubscriptionError)).error
    await client.send(Subscribe(4, 4, ("SELECT * FROM person",)))
    await client.expect(SubscribeApplied)


async def expect_while_progressing(
    client: Client, kind: type[Any], progress: Callable[[], object], stalled_after: float = 5.0
) -> Any:
    """The next message, expected to be a `kind`, waited for as long as the host keeps making `progress`: a test
    must not depend on the machine's load, so it fails only when a whole `stalled_after` passed with no message and
    no progress, however long the work takes."""
    receiving = asyncio.ensure_future(client.recv(within=None))
    last = progress()
    while True:
        done, _ = await asyncio.wait({receiving}, timeout=stalled_after)
        if done:
            message = receiving.result()
            assert isinstance(message, kind), f"expected {kind.__name__}, got {message!r:.300}"
            return message
        now = progress()
        if now == last:
            receiving.cancel()
            raise AssertionError(f"no {kind.__name__} and no progress at the host in {stalled_after} s")
        last = now


async def test_thousands_of_query_sets_on_one_connection(host: Host) -> None:
    """2,000 subscriptions sent at once are each applied, and a commit updates only the one whose rows it touches.

    The host compiles each distinct query (sqlglot's parse is ~80% of its time here, ~0.7 ms a query idle), so the
    answers take seconds on a loaded machine: the wait follows the host's progress, not the clock."""
    client = await connect(host)
    count = 2000  # OPTIONS raise the cap of query sets per connection to this
    await client.send(*(Subscribe(i, i, (f"SELECT * FROM person WHERE age = {i}",)) for i in range(count)))

    def progress() -> tuple[int, int]:
        held = sum(host.hub.subscriptions.query_set_count(c) for c in host.hub.connections)
        return held, client.frames

    for _ in range(count):
        await expect_while_progressing(client, SubscribeApplied, progress)
    assert client.frames < count  # v3 coalesced many answers per frame
    await client.call(1, "add_person", "x", 1234)
    result = await client.expect(ReducerResult)
    assert isinstance(result.result, ReducerOk)
    assert [qs.query_set_id for qs in result.result.transaction_update.query_sets] == [1234]


async def test_an_idle_connection_holds_one_task_and_no_writer(host: Host) -> None:
    """10,000 idle sockets must stay small (docs/performance.md, Round 3): an idle connection keeps only the task that
    serves it; its writer exists while frames wait, its pings and idle check are a timer."""
    before = len(asyncio.all_tasks())  # the test's own
    clients = [await connect(host) for _ in range(10)]
    for i, client in enumerate(clients):
        await client.send(Subscribe(1, 1, (f"SELECT * FROM person WHERE age = {i}",)))
        await client.expect(SubscribeApplied)
    await asyncio.sleep(OPTIONS.ping_interval * 2)  # pinged and answered (the clients auto-pong) in between
    await clients[0].ws.ping()  # a ping from the client is answered by the host's read loop
    assert all(not connection.writing for connection in host.hub.connections)
    # aiohttp serves a connection with two tasks (`RequestHandler.start` and the request's); pings in flight come
    # and go. Nothing else: before, each idle socket also held a writer, a pinger and a receive task.
    held = [task for task in asyncio.all_tasks() if task.get_coro().__qualname__ != "_ping_quietly"]  # type: ignore[union-attr]
    assert len(held) - before <= 2 * len(clients)
    assert len(host.hub.connections) == len(clients)
    for client in clients:
        await client.ws.close()


async def test_compression_over_threshold_only(host: Host) -> None:
    for mode, tag in (("Gzip", 2), ("Brotli", 1)):
        client = await connect(host, compression=mode)
        assert client.tags == [0]  # InitialConnection is small
        await client.call(1, "add_person", f"{mode}-" + "x" * 2000, 1)
        await client.expect(ReducerResult)
        await client.send(Subscribe(1, 1, ("SELECT * FROM person",)))
        applied = await client.expect(SubscribeApplied)
        assert client.tags[-1] == tag
        assert any(row[1].startswith(mode) for row in single_table(applied.rows))
        await client.ws.close()


async def test_one_update_is_encoded_and_compressed_once_for_every_identical_subscriber(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autopilot_sync.spacetime import frames

    encoded: list[str] = []
    compressed: list[frames.Compression] = []
    encode, frame = frames.encode_server_message, frames.encode_server_frame

    def counting_encode(message: ServerMessage) -> bytes:
        encoded.append(type(message).__name__)
        return encode(message)

    def counting_frame(bodies: Any, compression: frames.Compression, threshold: int = 1024) -> bytes:
        out = frame(bodies, compression, threshold)
        if out[0] != 0:
            compressed.append(compression)
        return out

    subscribers = []
    for protocols, compression in [((V3_PROTOCOL,), "Gzip"), ((V2_PROTOCOL,), "Gzip"), ((V3_PROTOCOL,), "Brotli")] * 3:
        client = await connect(host, protocols, compression=compression)
        await client.send(Subscribe(1, 5, ("SELECT * FROM person",)))
        await client.expect(SubscribeApplied)
        subscribers.append(client)
    caller = await connect(host)
    monkeypatch.setattr(frames, "encode_server_message", counting_encode)
    monkeypatch.setattr(frames, "encode_server_frame", counting_frame)
    name = "n" * 3000  # over the compression threshold
    await caller.call(1, "add_person", name, 1)
    await caller.expect(ReducerResult)
    bodies = set()
    for client in subscribers:
        update = await client.expect(TransactionUpdate)
        (qs,) = update.query_sets
        assert qs.query_set_id == 5 and people(qs.tables[0].rows[0].inserts) == [(1, name, 1)]  # type: ignore[union-attr]
        bodies.add(update)
    assert len(bodies) == 1
    assert encoded.count("TransactionUpdate") == 1  # once for nine subscribers
    assert sorted(c.value for c in compressed) == ["Brotli", "Gzip"]  # once per compression, not per socket


# ----- hostile clients -----


async def test_garbage_frame_closes_1011_with_the_decode_error(host: Host) -> None:
    good = await connect(host)
    await good.send(Subscribe(1, 1, ("SELECT * FROM person",)))
    await good.expect(SubscribeApplied)
    for protocol in (V3_PROTOCOL, V2_PROTOCOL):
        bad = await connect(host, protocols=(protocol,))
        await bad.ws.send_bytes(b"\xff\x00garbage")
        code, reason = await bad.closed()
        assert code == 1011 and "invalid ClientMessage tag 255" in reason
    text = await connect(host, protocols=(V2_PROTOCOL,))
    await text.ws.send_str("hello")
    code, reason = await text.closed()
    assert code == 1011 and reason == "v2 websocket does not support text messages"
    await good.call(1, "add_person", "ok", 1)
    assert isinstance((await good.expect(ReducerResult)).result, ReducerOk)
    await wait_for(lambda: host.online() == 1)


async def test_v3_frame_with_a_bad_tail_runs_the_good_messages_first(host: Host) -> None:
    client = await connect(host)
    params = module.reducers["add_person"].params
    good = encode_client_message(CallReducer(1, CallReducerFlags.DEFAULT, "add_person", bsatn.encode(params, ("a", 1))))
    await client.ws.send_bytes(good + b"\x09")
    code, reason = await client.closed()
    assert code == 1011 and "tag 9" in reason
    assert [row[1] for row in host.engine.datastore["person"].rows.values()] == ["a"]


async def test_oversized_message_closes_1009(host: Host) -> None:
    good = await connect(host)
    bad = await connect(host)
    await bad.ws.send_bytes(b"\x00" * (OPTIONS.max_message_bytes + 1))
    code, _ = await bad.closed()
    assert code == 1009
    await good.call(1, "add_person", "still-here", 1)
    assert isinstance((await good.expect(ReducerResult)).result, ReducerOk)
    await wait_for(lambda: host.online() == 1)


async def test_idle_client_is_dropped_and_pings_keep_live_ones(host: Host) -> None:
    # aiohttp answers our pings while it reads, so this client stays past the idle timeout...
    live = await connect(host)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(live.ws.receive(), OPTIONS.idle_timeout * 1.5)
    await live.call(1, "add_person", "alive", 1)
    assert isinstance((await live.expect(ReducerResult)).result, ReducerOk)
    # ...while a raw client that never answers is dropped.
    raw = await RawClient.open(host)
    await wait_for(lambda: host.is_online(raw.connection_id))
    await wait_for(lambda: not host.is_online(raw.connection_id), within=OPTIONS.idle_timeout * 4)
    raw.close()


async def test_abrupt_reset_runs_client_disconnected(host: Host) -> None:
    good = await connect(host)
    raw = await RawClient.open(host)
    await wait_for(lambda: host.online() == 2)
    raw.reset()
    await wait_for(lambda: host.online() == 1)
    await good.call(1, "add_person", "after-reset", 1)
    assert isinstance((await good.expect(ReducerResult)).result, ReducerOk)


@pytest.fixture
async def tight_host(tmp_path: Path) -> AsyncIterator[Host]:
    options = WebSocketOptions(
        ping_interval=5, idle_timeout=30, send_queue_max_messages=20, send_queue_max_bytes=4 * 1024 * 1024
    )
    async for running in _host(tmp_path, options):
        yield running


async def test_slow_consumer_is_disconnected_not_buffered(tight_host: Host, caplog: pytest.LogCaptureFixture) -> None:
    host = tight_host
    if True:
        good = await connect(host)
        await good.send(Subscribe(1, 1, ("SELECT * FROM message",)))
        await good.expect(SubscribeApplied)
        slow = await RawClient.open(host)
        slow.send(encode_client_message(Subscribe(1, 1, ("SELECT * FROM message",))))
        await wait_for(lambda: host.online() == 2)
        text = "y" * 60_000
        params = module.reducers["send_message"].params
        for i in range(400):
            await good.send(CallReducer(i, CallReducerFlags.DEFAULT, "send_message", bsatn.encode(params, (text,))))
            result = await good.expect(ReducerResult)
            assert isinstance(result.result, ReducerOk), result
            if host.online() == 1:
                break
        await wait_for(lambda: not host.is_online(slow.connection_id))
        assert host.online() == 1
        assert any("messages" in r.getMessage() and "queued" in r.getMessage() for r in caplog.records)
        slow.close()


class RawClient:
    """A client that upgrades by hand and then reads nothing: for idle, reset and slow-consumer tests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connection_id: ConnectionId) -> None:
        self.reader = reader
        self.writer = writer
        self.connection_id = connection_id

    @classmethod
    async def open(cls, host: Host) -> RawClient:
        address = host.base.removeprefix("http://")
        hostname, port = address.split(":")
        reader, writer = await asyncio.open_connection(hostname, int(port))
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        key = base64.b64encode(os.urandom(16)).decode()
        connection_id = ConnectionId(int.from_bytes(os.urandom(16), "big") | 1)
        writer.write(
            (
                f"GET /v1/database/{DB}/subscribe?compression=None&connection_id={connection_id.hex} HTTP/1.1\r\n"
                f"Host: {address}\r\n"
                "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Protocol: {V2_PROTOCOL}\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer, connection_id)

    def send(self, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x82, 0x80 | length)
        elif length < 65536:
            header = struct.pack("!BBH", 0x82, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x82, 0x80 | 127, length)
        self.writer.write(header + mask + masked)

    def reset(self) -> None:
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    def close(self) -> None:
        self.writer.transport.abort()


def test_close_codes_doc_lists_every_close_reason() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
    table = doc[doc.index("## Close codes") :]
    for reason in CloseReason:
        if reason.text:
            assert f"| {reason.code} | `{reason.text}` |" in table, reason
        else:
            assert f"| {reason.code} | *" in table, reason


# ----- fidelity with SpacetimeDB 2.x (issue 20) -----


async def test_trailing_bytes_after_reducer_arguments_are_ignored_as_spacetimedb_does(host: Host) -> None:
    # crates/core/src/host/mod.rs `FunctionArgs::_into_tuple` deserializes a prefix and never checks for the end.
    client = await connect(host)
    params = module.reducers["add_person"].params
    args = bsatn.encode(params, ("ada", 36)) + b"\x00trailing"
    await client.send(CallReducer(1, CallReducerFlags.DEFAULT, "add_person", args))
    result = await client.expect(ReducerResult)
    assert isinstance(result.result, ReducerOk), result
    assert [row[1:] for row in host.engine.datastore["person"].rows.values()] == [("ada", 36)]


async def test_subscribe_with_zero_queries_is_applied_with_no_rows(host: Host) -> None:
    # crates/core/src/subscription/module_subscription_actor.rs: an empty batch compiles and is added like any other.
    client = await connect(host)
    await client.call(1, "add_person", "ada", 36)
    await client.expect(ReducerResult)
    await client.send(Subscribe(2, 5, ()))
    applied = await client.expect(SubscribeApplied)
    assert (applied.request_id, applied.query_set_id, applied.rows.tables) == (2, 5, ())
    await client.send(Unsubscribe(3, 5))
    assert (await client.expect(UnsubscribeApplied)).query_set_id == 5


async def test_duplicate_query_set_id_closes_the_socket_1011_as_spacetimedb_does(host: Host) -> None:
    # crates/core/src/subscription/module_subscription_manager.rs `add_subscription_v2` errors; the error leaves the
    # message handler and crates/client-api/src/routes/subscribe.rs closes with CloseCode::Error (1011).
    good = await connect(host)
    client = await connect(host)
    await client.send(Subscribe(1, 7, ("SELECT * FROM person",)))
    await client.expect(SubscribeApplied)
    await client.send(Subscribe(2, 7, ("SELECT * FROM person WHERE age > 1",)))
    code, reason = await client.closed()
    assert code == 1011
    assert reason.startswith("error executing message (reducer: None) (err: Subscription with id QuerySetId { id: 7 }")
    await good.call(1, "add_person", "still-here", 1)
    assert isinstance((await good.expect(ReducerResult)).result, ReducerOk)
    await wait_for(lambda: host.online() == 1)


async def test_error_texts_are_spacetimedb_texts(host: Host) -> None:
    client = await connect(host)
    # crates/engine/src/error.rs `DBError::WithSql`: "{error}, executing: `{sql}`", the SQL trimmed.
    await client.send(Subscribe(1, 1, (" SELECT * FROM nope ",)))
    error = await client.expect(SubscriptionError)
    assert error.error.endswith(", executing: `SELECT * FROM nope`"), error.error
    # sqlparser 0.38 (SpacetimeDB's parser): not a statement keyword -> "Expected an SQL statement, found: …".
    await client.send(Subscribe(2, 2, ("SELEC * FRM x",)))
    error = await client.expect(SubscriptionError)
    assert error.error == (
        "sql parser error: Expected an SQL statement, found: SELEC at Line: 1, Column 1, executing: `SELEC * FRM x`"
    )
    await client.send(OneOffQuery(3, "SELEC * FRM x"))
    one_off = await client.expect(OneOffQueryResult)
    assert one_off.result == "sql parser error: Expected an SQL statement, found: SELEC at Line: 1, Column 1"
    # crates/core/src/host/module_host.rs `ReducerCallError::NoSuchReducer`: "no such reducer", without the name.
    await client.send(CallReducer(4, CallReducerFlags.DEFAULT, "no_such", b""))
    result = await client.expect(ReducerResult)
    assert result.result == ReducerInternalError("no such reducer")
