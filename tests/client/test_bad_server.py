"""Bad server input closes the connection with a typed error and never corrupts the cache.

`GarbageServerDouble` is a test double: a tiny aiohttp WebSocket server that speaks just enough of the protocol
(InitialConnection, one SubscribeApplied) and then sends whatever the test scripts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from chat_session_doubles import SCHEMA, person_row

from autopilot_sync.client import (
    BackoffPolicy,
    CloseReason,
    ConnectionLostError,
    ConnectionState,
    ProtocolError,
    ProtocolErrorKind,
    StateEvent,
    SyncClient,
    connect,
)
from autopilot_sync.spacetime import messages as m
from autopilot_sync.spacetime.frames import Compression, encode_v2_server_frame
from autopilot_sync.spacetime.values import ConnectionId, Identity

pytestmark = pytest.mark.timeout(30)


def frame(message: m.ServerMessage) -> bytes:
    return encode_v2_server_frame(message, Compression.NONE)


HELLO = frame(m.InitialConnection(Identity(1), ConnectionId(2), "token"))


@dataclass
class GarbageServerDouble:
    """Sends InitialConnection, answers the first Subscribe with one person, then sends `script` frames."""

    script: list[bytes | str]
    connections: int = 0
    runner: web.AppRunner | None = None
    port: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    protocol: str = "v2.bsatn.spacetimedb"
    #: what the last upgrade request carried: its query parameters and its `Authorization` header
    upgrade_query: dict[str, str] = field(default_factory=dict)
    upgrade_authorization: str | None = None
    #: calls of the token exchange route (`POST /v1/identity/websocket-token`)
    exchanges: int = 0

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        self.connections += 1
        self.upgrade_query = dict(request.query)
        self.upgrade_authorization = request.headers.get("Authorization")
        ws = web.WebSocketResponse(protocols=(self.protocol,))
        await ws.prepare(request)
        await ws.send_bytes(HELLO)
        async for msg in ws:
            sub = m.decode_client_message(msg.data)
            if isinstance(sub, m.Subscribe):
                rows = m.query_rows([("person", [person_row(1, "ann", 3)])])
                await ws.send_bytes(frame(m.SubscribeApplied(sub.request_id, sub.query_set_id, rows)))
                await self.release.wait()
                for item in self.script:
                    if isinstance(item, str):
                        await ws.send_str(item)
                    else:
                        await ws.send_bytes(item)
        return ws

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def short_token(self, request: web.Request) -> web.Response:
        """The double's token exchange: any caller gets the same short token."""
        del request
        self.exchanges += 1
        return web.json_response({"token": "short"})


@pytest.fixture
async def double_factory() -> AsyncIterator[Callable[..., asyncio.Future[GarbageServerDouble]]]:
    runners: list[web.AppRunner] = []

    async def make(script: list[bytes | str], protocol: str = "v2.bsatn.spacetimedb") -> GarbageServerDouble:
        double = GarbageServerDouble(script, protocol=protocol)
        app = web.Application()
        app.router.add_get("/v1/database/{name}/subscribe", double.handler)
        app.router.add_post("/v1/identity/websocket-token", double.short_token)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        double.port = runner.addresses[0][1]
        runners.append(runner)
        return double

    yield make  # type: ignore[misc]
    for runner in runners:
        await runner.cleanup()


UPDATE_UNKNOWN_SET = frame(
    m.TransactionUpdate(
        (
            m.QuerySetUpdate(
                99,
                (
                    m.TableUpdate(
                        "person",
                        (
                            m.PersistentTableRows(
                                m.BsatnRowList.from_rows([person_row(2, "bo", 1)]), m.BsatnRowList.empty()
                            ),
                        ),
                    ),
                ),
            ),
        )
    )
)


def update_for(query_set_id: int, table: str, rows: list[bytes]) -> bytes:
    inserts = m.BsatnRowList.from_rows(rows)
    tables = (m.TableUpdate(table, (m.PersistentTableRows(inserts, m.BsatnRowList.empty()),)),)
    return frame(m.TransactionUpdate((m.QuerySetUpdate(query_set_id, tables),)))


CASES: dict[str, tuple[bytes | str, ProtocolErrorKind]] = {
    "unknown compression tag": (b"\x09" + b"junk", ProtocolErrorKind.UNDECODABLE_FRAME),
    "empty frame": (b"", ProtocolErrorKind.UNDECODABLE_FRAME),
    "unknown message tag": (b"\x00\x42", ProtocolErrorKind.UNDECODABLE_FRAME),
    "truncated frame": (UPDATE_UNKNOWN_SET[:-3], ProtocolErrorKind.UNDECODABLE_FRAME),
    "corrupt gzip": (b"\x02not gzip at all", ProtocolErrorKind.UNDECODABLE_FRAME),
    "text frame": ("hello", ProtocolErrorKind.TEXT_FRAME),
    "update for unknown query set": (UPDATE_UNKNOWN_SET, ProtocolErrorKind.UNKNOWN_QUERY_SET),
    "second InitialConnection": (HELLO, ProtocolErrorKind.UNEXPECTED_MESSAGE),
    "answer to a request never sent": (
        frame(
            m.ReducerResult(
                77,
                m.Timestamp(0)
                if hasattr(m, "Timestamp")
                else __import__("autopilot_sync.spacetime.values", fromlist=["Timestamp"]).Timestamp(0),
                m.ReducerOkEmpty(),
            )
        ),
        ProtocolErrorKind.UNKNOWN_REQUEST,
    ),
    "unknown table": (update_for(1, "no_such_table", [b"x"]), ProtocolErrorKind.UNKNOWN_TABLE),
    "row that does not decode": (update_for(1, "person", [b"\x01\x02"]), ProtocolErrorKind.BAD_ROW),
}


async def test_connect_sends_its_token_in_the_upgrade_header_never_in_the_url(
    double_factory: Callable[[list[bytes | str]], asyncio.Future[GarbageServerDouble]],
) -> None:
    """As SpacetimeDB's Rust SDK: `Authorization: Bearer` on the upgrade, no exchange round trip, no `?token=`."""
    double = await double_factory([])
    conn = await connect(
        double.base_url, "chat", token="the-callers-token", schema=SCHEMA, compression=Compression.NONE
    )
    try:
        assert double.upgrade_authorization == "Bearer the-callers-token"
        assert "token" not in double.upgrade_query
        assert double.exchanges == 0
    finally:
        await conn.close()


@pytest.mark.parametrize("case", sorted(CASES))
async def test_bad_input_closes_with_typed_error_and_keeps_cache(
    double_factory: Callable[[list[bytes | str]], asyncio.Future[GarbageServerDouble]], case: str
) -> None:
    payload, kind = CASES[case]
    double = await double_factory([payload])
    conn = await connect(double.base_url, "chat", schema=SCHEMA, compression=Compression.NONE)
    qs = await conn.subscribe(["SELECT * FROM person"])
    await qs.applied()
    before = conn.cache.rows("person")
    double.release.set()
    info = await asyncio.wait_for(conn.wait_closed(), 5)
    assert info.reason is CloseReason.PROTOCOL_ERROR
    assert isinstance(info.error, ProtocolError) and info.error.kind is kind
    assert conn.cache.rows("person") == before == [(1, "ann", 3)]


async def test_good_messages_before_garbage_in_the_same_session_stay_applied(
    double_factory: Callable[[list[bytes | str]], asyncio.Future[GarbageServerDouble]],
) -> None:
    double = await double_factory([update_for(1, "person", [person_row(2, "bo", 1)]), b"\x00\xff"])
    conn = await connect(double.base_url, "chat", schema=SCHEMA, compression=Compression.NONE)
    await (await conn.subscribe(["SELECT * FROM person"])).applied()
    double.release.set()
    info = await asyncio.wait_for(conn.wait_closed(), 5)
    assert info.reason is CloseReason.PROTOCOL_ERROR
    assert sorted(p.name for p in conn.cache.rows("person")) == ["ann", "bo"]


async def test_protocol_errors_are_retried_a_bounded_number_of_times(
    double_factory: Callable[[list[bytes | str]], asyncio.Future[GarbageServerDouble]],
) -> None:
    double = await double_factory([b"\x00\xff"])
    double.release.set()
    events: list[StateEvent] = []
    policy = BackoffPolicy(base=0.01, cap=0.05, max_protocol_errors=3)
    client = SyncClient(double.base_url, "chat", schema=SCHEMA, policy=policy)
    closed = asyncio.Event()
    client.on_state(events.append)
    client.on_state(lambda e: closed.set() if e.state is ConnectionState.CLOSED else None)
    await client.subscribe(["SELECT * FROM person"])
    await client.start()
    try:
        await asyncio.wait_for(closed.wait(), 10)
    finally:
        await client.close()
    assert double.connections == 4  # the first try plus three retries, then give up
    closed = [e for e in events if e.state is ConnectionState.CLOSED]
    assert "invalid ServerMessage tag 255" in (closed[0].reason or "")
    backoffs = [e for e in events if e.state is ConnectionState.BACKING_OFF]
    assert len(backoffs) == 3 and all(e.next_retry_at is not None and e.delay is not None for e in backoffs)


async def test_a_v3_call_whose_write_fails_raises_connection_lost_and_ends_the_connection(
    double_factory: Callable[..., asyncio.Future[GarbageServerDouble]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # On v3 a reducer call awaits its answer, not its write (one flush callback writes what is queued): a write that
    # fails must still reach the caller, as ConnectionLostError, and end the connection; the call never hangs.
    double = await double_factory([], protocol="v3.bsatn.spacetimedb")
    conn = await connect(double.base_url, "chat", schema=SCHEMA, compression=Compression.NONE)
    assert conn.protocol == "v3.bsatn.spacetimedb"

    def reset(data: bytes) -> None:
        raise ConnectionResetError("reset by the test")

    monkeypatch.setattr(conn._ws, "send", reset)
    with pytest.raises(ConnectionLostError):
        await conn.call("add_person", "dee", 9)
    info = await conn.wait_closed()
    assert info.reason is CloseReason.NETWORK_ERROR
    assert conn.in_flight() == []
