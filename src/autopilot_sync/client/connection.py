"""One WebSocket session with a Spacetime host: negotiation, frames, request ids, and routing answers to callers.

`connect()` opens `GET /v1/database/:name/subscribe` with the caller's token in its `Authorization` header, offering
`v3.bsatn.spacetimedb` then `v2.bsatn.spacetimedb`, and waits for `InitialConnection`. After that every frame is
decoded where it arrives (the WebSocket protocol's `data_received`, `websocket.py`: no reader task, no queue) and each
message, in wire order, goes to the connection's `ClientSession` (`session.py`, the sans-I/O protocol state), which
checks it against what this connection has asked for (query sets, request ids) and fully decodes it before it touches
the cache; this module resolves the futures callers await, from that same callback. Anything the protocol
forbids closes the connection with a `ProtocolError` as the reason, fails every waiting call, and leaves the cache
exactly as the last good message left it. The session does not reconnect: that is `reconnect.SyncClient`'s job.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp

from autopilot_sync.client.cache import ClientCache
from autopilot_sync.client.errors import (
    AuthenticationError,
    ConnectError,
    ConnectionLostError,
    ConnectionRejectedError,
    OneOffQueryError,
    ProtocolError,
    ProtocolErrorKind,
    ReducerArgumentError,
    UnknownReducerError,
)
from autopilot_sync.client.query_set import QuerySet
from autopilot_sync.client.results import (
    ProcedureCallResult,
    QueryResult,
    ReducerCallResult,
)
from autopilot_sync.client.schema import ClientSchema, RowFactory, fetch_schema
from autopilot_sync.client.session import (
    PROTOCOL_V2,
    PROTOCOL_V3,
    CallAnswered,
    ClientSession,
    ProcedureAnswered,
    QueryAnswered,
    UnsubscribeDone,
    decode_frame,
)
from autopilot_sync.client.websocket import HandshakeError, WebSocket, open_websocket
from autopilot_sync.spacetime import messages as m
from autopilot_sync.spacetime.frames import (
    MAX_MESSAGE_SIZE,
    Compression,
)
from autopilot_sync.spacetime.values import ConnectionId, Identity

log = logging.getLogger(__name__)

#: Offered in this order; the server picks by its own preference among them.
OFFERED_PROTOCOLS = (PROTOCOL_V3, PROTOCOL_V2)
#: WebSocket close code sent when the server broke the protocol (RFC 6455 1002).
CLOSE_PROTOCOL_ERROR = 1002


class CloseReason(enum.Enum):
    """Why a connection ended."""

    CLIENT_CLOSED = "client_closed"
    SERVER_CLOSED = "server_closed"
    NETWORK_ERROR = "network_error"
    PROTOCOL_ERROR = "protocol_error"


@dataclass(frozen=True, slots=True)
class CloseInfo:
    """How a connection ended: the reason, a message, the WebSocket close code if any, and the error if any."""

    reason: CloseReason
    message: str
    code: int | None = None
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    """Knobs of one session; the defaults match the official SDK where it has one."""

    compression: Compression = Compression.GZIP
    """What the server should compress frames with (the official SDK asks for Gzip)."""
    confirmed: bool | None = None
    """`?confirmed=`: None leaves the server default (true in v2/v3: updates only once durable)."""
    protocols: tuple[str, ...] = OFFERED_PROTOCOLS
    """Subprotocols offered, most preferred first."""
    handshake_timeout: float = 10.0
    """Seconds allowed from opening the socket to `InitialConnection`."""
    heartbeat: float | None = 30.0
    """Seconds of silence before the client pings; no answer within half of it closes the connection (None: rely
    on the server's pings)."""
    max_message_bytes: int = MAX_MESSAGE_SIZE
    """Largest frame (and decompressed body) accepted."""


class Connection:
    """A live session; build one with `connect()`.

    The adapter around a `ClientSession` (`session.py`, the protocol state): it owns the socket (whose protocol calls
    `ws_message` for every message as it arrives), the v3 flush timing (messages sent in one event-loop turn share
    frames) and the futures callers await.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        owns_session: bool,
        ws: WebSocket,
        schema: ClientSchema,
        cache: ClientCache,
        protocol: str,
        options: ConnectOptions,
        initial: m.InitialConnection,
        base_url: str,
        database: str,
    ) -> None:
        self.schema = schema
        self.cache = cache
        self.protocol = protocol
        self.options = options
        self.identity: Identity = initial.identity
        self.connection_id: ConnectionId = initial.connection_id
        #: the token the server issued or confirmed in `InitialConnection`
        self.token: str = initial.token
        self.base_url = base_url
        self.database = database
        #: the protocol state (ids, what is owed, query set phases, the outgoing queue)
        self.state = ClientSession(schema, cache, protocol, options.max_message_bytes)
        self._session = session
        self._owns_session = owns_session
        self._ws = ws
        self._unsubscribes: dict[int, asyncio.Future[None]] = {}
        self._calls: dict[int, asyncio.Future[ReducerCallResult]] = {}
        self._procedure_calls: dict[int, asyncio.Future[ProcedureCallResult]] = {}
        self._one_offs: dict[int, asyncio.Future[QueryResult]] = {}
        self._close_info: CloseInfo | None = None
        #: client messages and WebSocket frames sent so far (v3 coalesces messages into fewer frames)
        self.messages_sent = 0
        self.frames_sent = 0
        self._loop = asyncio.get_running_loop()
        self._flush_due = False  # a flush is scheduled for the end of this loop turn
        self._flushed: asyncio.Future[None] | None = None  # resolved when that flush has written
        self._closing: asyncio.Task[None] | None = None
        self._closed = self._loop.create_future()
        ws.attach(self)
        ws.start_heartbeat(options.heartbeat)

    # ----- lifecycle -----

    @property
    def is_open(self) -> bool:
        """False once the connection has ended, for whatever reason."""
        return self._close_info is None

    @property
    def close_info(self) -> CloseInfo | None:
        """How the connection ended (None while open)."""
        return self._close_info

    async def wait_closed(self) -> CloseInfo:
        """Wait until the connection ends and say how."""
        info: CloseInfo = await asyncio.shield(self._closed)
        return info

    async def close(self) -> CloseInfo:
        """Close from our side (idempotent); pending calls fail with `ConnectionLostError`."""
        await self._shutdown(CloseInfo(CloseReason.CLIENT_CLOSED, "closed by the client"))
        return await self.wait_closed()

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _shutdown(self, info: CloseInfo) -> None:
        if self._close_info is not None:
            if self._closing is not None and self._closing is not asyncio.current_task():
                await asyncio.shield(self._closing)
            return
        self._end(info)
        await self._finish(info)

    def _end_soon(self, info: CloseInfo) -> None:
        """End now (from a protocol callback: nothing more is handled or owed), and close the socket in a task."""
        if self._close_info is not None:
            return
        self._end(info)
        self._closing = self._loop.create_task(self._finish(info))

    def _end(self, info: CloseInfo) -> None:
        """Mark the connection ended and fail every waiting call, at once (no await: nothing slips in between)."""
        self._close_info = info
        if info.reason is CloseReason.PROTOCOL_ERROR:
            log.warning("closing connection %s: %s", self.connection_id.hex[:8], info.message)
        lost = ConnectionLostError(f"connection closed: {info.message}", info.error)
        waiting: list[asyncio.Future[Any]] = [
            *self._calls.values(),
            *self._procedure_calls.values(),
            *self._one_offs.values(),
        ]
        for future in (*waiting, *self._unsubscribes.values()):
            if not future.done():
                future.set_exception(lost)
        self._calls.clear()
        self._procedure_calls.clear()
        self._one_offs.clear()
        self._unsubscribes.clear()
        self.state.connection_lost(info.message)
        if self._flushed is not None and not self._flushed.done():
            self._flushed.set_exception(lost)
            self._flushed.exception()  # retrieved: its waiters get it, and there may be none

    async def _finish(self, info: CloseInfo) -> None:
        """The closing handshake and the HTTP session's end; then `wait_closed` answers."""
        code = CLOSE_PROTOCOL_ERROR if info.reason is CloseReason.PROTOCOL_ERROR else aiohttp.WSCloseCode.OK
        with contextlib.suppress(Exception):
            await self._ws.close(code, info.message[:120].encode())
        if self._owns_session:
            with contextlib.suppress(Exception):
                await self._session.close()
        if not self._closed.done():
            self._closed.set_result(info)

    # ----- requests -----

    def _check_open(self) -> None:
        if self._close_info is not None:
            raise ConnectionLostError(f"connection closed: {self._close_info.message}", self._close_info.error)

    async def _send(self, message: m.ClientMessage, *, written: bool = True) -> None:
        """Send one message; on v3, messages sent in the same event-loop turn share frames (in order).

        v3 lets a binary frame carry several client messages; like the official SDK's v3 outbound queue, we coalesce
        what is queued before the flush runs into frames of at most `V3_CLIENT_FRAME_CAP` bytes (the session packs
        them; `_push` says when a lone call goes at once instead). Returns once the frame holding this message was
        written; ConnectionLostError when it could not be. With `written=False` a v3 send returns once the message is
        queued: a write that fails ends the connection, which fails every waiting request.
        """
        self._check_open()
        self.state.queue(message)
        if not self._push() and written:
            if self._flushed is None:
                self._flushed = self._loop.create_future()
            await asyncio.shield(self._flushed)
        if written:
            await self._ws.drain()

    def _push(self, lone: bool = False) -> bool:
        """One message was queued: write it now (True), or flush it at the end of this loop turn (False).

        v2 writes every message at once. v3 also writes at once a `lone` message (a reducer call sent while no other
        request of this connection awaits its answer) when no flush is due this turn: that is every call of a
        producer with one call in flight, whose frame then leaves in the caller's own step rather than in a callback
        of a loop turn of its own (docs/performance.md "Round 8 — sdkcall3"). Anything else waits for the end of the
        turn, so a burst's messages still share frames (its first call alone, the rest of the turn together).
        """
        self.messages_sent += 1
        if self.state.coalesces and (self._flush_due or not lone):
            if not self._flush_due:
                self._flush_due = True
                self._loop.call_soon(self._flush_outbox)
            return False
        for frame in self.state.frames_to_send():
            self._write(frame)
        return True

    def _awaits_nothing(self) -> bool:
        """No request of this connection is waiting for its answer."""
        return not (self._calls or self._procedure_calls or self._one_offs or self._unsubscribes)

    def _flush_outbox(self) -> None:
        """Write everything queued, in order, as frames (a plain callback at the end of the turn it was asked in).

        The callback runs after the callbacks already due in this loop turn, so every message sent in the turn joins
        the first frame. The socket's write is synchronous (the transport buffers; `_send` waits for `drain` where a
        caller asked to know it was written), so a call costs no loop turn of its own to write.
        """
        self._flush_due = False
        flushed, self._flushed = self._flushed, None
        try:
            for frame in self.state.frames_to_send():
                self._write(frame)
        except ConnectionLostError as exc:  # `_write` ended the connection, which failed every call
            if flushed is not None and not flushed.done():
                flushed.set_exception(exc)
                flushed.exception()
            return
        if flushed is not None and not flushed.done():
            flushed.set_result(None)

    def _write(self, frame: bytes) -> None:
        self._check_open()
        try:
            self._ws.send(frame)
        except (ConnectionError, OSError, RuntimeError) as exc:
            self._end_soon(CloseInfo(CloseReason.NETWORK_ERROR, f"send failed: {exc}", error=exc))
            raise ConnectionLostError(f"send failed: {exc}", exc) from exc
        self.frames_sent += 1

    async def subscribe(self, queries: Sequence[str], *, query_set: QuerySet | None = None) -> QuerySet:
        """Subscribe a new query set (or re-attach a managed one); returns at once: `await qs.applied()` for rows."""
        query_set, message = self.state.subscribe(queries, self, query_set)
        try:
            await self._send(message)
        except ConnectionLostError:
            self.state.subscribe_not_sent(query_set)
            raise
        return query_set

    async def unsubscribe(self, query_set: QuerySet) -> None:
        """End a query set; its rows leave the cache when the server confirms with `UnsubscribeApplied`."""
        step = self.state.unsubscribe(query_set)
        if step is None:
            return
        if isinstance(step, int):  # an unsubscribe of this set is already under way
            await asyncio.shield(self._unsubscribes[step])
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._unsubscribes[step.request_id] = future
        await self._send(step)
        await future

    async def call(self, reducer: str, *args: Any) -> ReducerCallResult:
        """Call a reducer with positional arguments (values as `bsatn` expects) and wait for its typed result."""
        definition = self.schema.reducers.get(reducer)
        if definition is None:
            raise UnknownReducerError(f"the module has no reducer {reducer!r}")
        if definition.lifecycle is not None:
            raise UnknownReducerError(f"{reducer!r} is a lifecycle reducer and cannot be called")
        try:
            payload = definition.encode_args(args)
        except (ValueError, TypeError) as exc:
            raise ReducerArgumentError(f"{reducer}{definition.param_names}: {exc}") from None
        return await self._call_answer(reducer, payload)

    async def call_raw(self, reducer: str, args: bytes) -> ReducerCallResult:
        """Call a reducer with already encoded arguments (no schema check)."""
        return await self._call_answer(reducer, args)

    def _call_answer(self, reducer: str, args: bytes) -> asyncio.Future[ReducerCallResult]:
        """Send the call now (or with this turn's flush) and return the future of its answer (one coroutine less per
        call than `call` awaiting `call_raw`)."""
        self._check_open()
        request_id = self.state.queue_call(reducer, args)
        lone = self._awaits_nothing()
        future: asyncio.Future[ReducerCallResult] = self._loop.create_future()
        self._calls[request_id] = future
        try:
            self._push(lone)  # awaits the answer, not the write: a write that fails ends the connection, failing it
        except ConnectionLostError:
            self._calls.pop(request_id, None)
            self.state.not_sent(request_id)
            raise
        return future

    async def call_procedure(self, procedure: str, *args: Any) -> ProcedureCallResult:
        """Call a procedure with positional arguments and wait for its value (`ProcedureReturned`) or failure.

        The updates of the transactions it committed reach the cache before the answer does.
        """
        definition = self.schema.procedures.get(procedure)
        if definition is None:
            raise UnknownReducerError(f"the module has no procedure {procedure!r}")
        try:
            payload = definition.encode_args(args)
        except (ValueError, TypeError) as exc:
            raise ReducerArgumentError(f"{procedure}{definition.params.field_names()}: {exc}") from None
        message = self.state.call_procedure(procedure, payload)
        future: asyncio.Future[ProcedureCallResult] = asyncio.get_running_loop().create_future()
        self._procedure_calls[message.request_id] = future
        try:
            await self._send(message)
        except ConnectionLostError:
            self._procedure_calls.pop(message.request_id, None)
            self.state.not_sent(message.request_id)
            raise
        return await future

    async def one_off_query(self, sql: str) -> QueryResult:
        """Run one SQL query once; `OneOffQueryError` with the server's message when it is refused."""
        message = self.state.one_off(sql)
        future: asyncio.Future[QueryResult] = asyncio.get_running_loop().create_future()
        self._one_offs[message.request_id] = future
        try:
            await self._send(message)
        except ConnectionLostError:
            self._one_offs.pop(message.request_id, None)
            self.state.not_sent(message.request_id)
            raise
        return await future

    def in_flight(self) -> list[asyncio.Future[Any]]:
        """Futures of the reducer calls and one-off queries not answered yet (a retiring session waits for them)."""
        calls: list[asyncio.Future[Any]] = [*self._calls.values(), *self._procedure_calls.values()]
        return calls + list(self._one_offs.values())

    def query_sets(self) -> list[QuerySet]:
        """Query sets live on this connection."""
        return self.state.query_sets()

    # ----- reading -----

    def ws_message(self, data: bytes, binary: bool) -> None:
        """One message from the socket, handled where it arrives (the protocol's `data_received`)."""
        if self._close_info is not None:
            return
        try:
            if not binary:
                raise ProtocolError(ProtocolErrorKind.TEXT_FRAME, "text frame on a binary protocol")
            self._on_frame(data)
        except ProtocolError as exc:
            self._end_soon(CloseInfo(CloseReason.PROTOCOL_ERROR, str(exc), CLOSE_PROTOCOL_ERROR, exc))

    def ws_closed(self, code: int | None, error: BaseException | None) -> None:
        """The socket ended (the server closed it, it dropped, or it broke the WebSocket protocol)."""
        if error is not None:
            info = CloseInfo(CloseReason.NETWORK_ERROR, f"websocket error: {error}", code, error)
        else:
            info = CloseInfo(CloseReason.SERVER_CLOSED, f"closed by the server (code {code})", code)
        self._end_soon(info)

    def _on_frame(self, data: bytes) -> None:
        state = self.state
        if state.apply_live_update(data):
            return
        answered = state.answer_from_frame(data)
        if answered is not None:
            call = self._calls.pop(answered.request_id, None)
            if call is not None and not call.done():
                call.set_result(answered.result)
            return
        for message in self.state.decode(data):
            if self._close_info is not None:
                return
            self.handle(message)

    def handle(self, message: m.ServerMessage) -> None:
        """Apply one decoded server message; raises `ProtocolError` (before any change) when it is not allowed."""
        answer = self.state.handle(message)
        if isinstance(answer, CallAnswered):
            call = self._calls.pop(answer.request_id, None)
            if call is not None and not call.done():
                call.set_result(answer.result)
        elif isinstance(answer, ProcedureAnswered):
            procedure = self._procedure_calls.pop(answer.request_id, None)
            if procedure is not None and not procedure.done():
                procedure.set_result(answer.result)
        elif isinstance(answer, QueryAnswered):
            query = self._one_offs.pop(answer.request_id, None)
            if query is not None and not query.done():
                if isinstance(answer.result, OneOffQueryError):
                    query.set_exception(answer.result)
                else:
                    query.set_result(answer.result)
        elif isinstance(answer, UnsubscribeDone):
            done = self._unsubscribes.pop(answer.request_id, None)
            if done is not None and not done.done():
                done.set_result(None)


def subscribe_url(base_url: str, database: str) -> str:
    """`ws(s)://…/v1/database/:name/subscribe` for an `http(s)://` (or `ws(s)://`) base URL."""
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return f"{base}/v1/database/{database}/subscribe"


def http_url(base_url: str) -> str:
    """The HTTP form of a base URL given as `ws(s)://`."""
    base = base_url.rstrip("/")
    if base.startswith("wss://"):
        return "https://" + base[len("wss://") :]
    if base.startswith("ws://"):
        return "http://" + base[len("ws://") :]
    return base


async def connect(
    base_url: str,
    database: str,
    *,
    token: str | None = None,
    compression: Compression = Compression.GZIP,
    schema: ClientSchema | None = None,
    row_types: Mapping[str, RowFactory] | None = None,
    cache: ClientCache | None = None,
    options: ConnectOptions | None = None,
    session: aiohttp.ClientSession | None = None,
) -> Connection:
    """Open a session and wait for `InitialConnection`.

    With `token`, the upgrade carries it as `Authorization: Bearer` (`AuthenticationError` when refused); without
    one the server mints an anonymous identity (`connection.token` then holds its token, to reconnect as the same
    identity). The schema is fetched from the server unless given; `row_types` maps table names to row classes.
    """
    opts = options or ConnectOptions(compression=compression)
    if options is not None and compression is not Compression.GZIP:
        opts = ConnectOptions(
            compression, opts.confirmed, opts.protocols, opts.handshake_timeout, opts.heartbeat, opts.max_message_bytes
        )
    http_base = http_url(base_url)
    owns_session = session is None
    client = session or aiohttp.ClientSession()
    try:
        if schema is None:
            schema = await fetch_schema(client, http_base, database, token, row_types)
        elif row_types:
            schema = schema.with_row_types(row_types)
        params = {"compression": opts.compression.value}
        if opts.confirmed is not None:
            params["confirmed"] = "true" if opts.confirmed else "false"
        ws = await _open(client, subscribe_url(http_base, database), params, opts, token)
        try:
            protocol = ws.protocol
            if protocol not in opts.protocols:
                raise ProtocolError(ProtocolErrorKind.NO_SUBPROTOCOL, f"server chose subprotocol {protocol!r}")
            initial = await _initial_connection(ws, protocol, opts)
        except BaseException:
            await ws.close()
            raise
    except BaseException:
        if owns_session:
            await client.close()
        raise
    return Connection(
        session=client,
        owns_session=owns_session,
        ws=ws,
        schema=schema,
        cache=cache if cache is not None else ClientCache(),
        protocol=protocol,
        options=opts,
        initial=initial,
        base_url=http_base,
        database=database,
    )


async def _open(
    client: aiohttp.ClientSession, url: str, params: dict[str, str], opts: ConnectOptions, token: str | None
) -> WebSocket:
    """The upgrade; `token` goes in its `Authorization` header (never the URL), as SpacetimeDB's Rust SDK sends it.

    The official TypeScript SDK first trades its token for a 60 s one at `/v1/identity/websocket-token` and puts that
    in `?token=`, because a browser's WebSocket cannot set headers; a client that can skips that round trip (one HTTP
    request, one host signature per connect: a third of what a reconnect storm cost the host per client, on top of
    the same share of the client's own time, docs/performance.md "Round 5 — storm2"). The host checks the token
    exactly as it checks the exchanged one, and ends the socket when the token's rights end. The socket is the SDK's
    own WebSocket client (`websocket.py`), not `client`'s: `client` serves the HTTP requests (the schema).
    """
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        return await open_websocket(
            url,
            params=params,
            headers=headers,
            protocols=opts.protocols,
            max_message_bytes=opts.max_message_bytes,
            within=opts.handshake_timeout,
        )
    except HandshakeError as exc:
        if exc.status == 401:
            raise AuthenticationError(f"the server refused the token: {exc.message}", status=401) from exc
        raise ConnectError(f"WebSocket handshake refused: {exc.status} {exc.message}", status=exc.status) from exc
    except (OSError, TimeoutError) as exc:
        raise ConnectError(f"cannot open {url}: {exc}") from exc


async def _initial_connection(ws: WebSocket, protocol: str, opts: ConnectOptions) -> m.InitialConnection:
    try:
        async with asyncio.timeout(opts.handshake_timeout):
            received = await ws.receive()
    except TimeoutError:
        raise ConnectError(f"no InitialConnection within {opts.handshake_timeout} s") from None
    if received is None:
        # The host upgrades before `client_connected` runs (as SpacetimeDB), so a refusal arrives as a close here.
        code = ws.close_code if ws.error is None else None
        reason = ws.close_reason
        said = f": {reason}" if reason else f" ({ws.error or 'closed'}, no reason given)"
        raise ConnectionRejectedError(f"the server refused the connection{said}", code, reason)
    data, binary = received
    if not binary:
        raise ProtocolError(ProtocolErrorKind.TEXT_FRAME, "text frame on a binary protocol")
    messages = decode_frame(data, protocol, opts.max_message_bytes)
    first = messages[0]
    if not isinstance(first, m.InitialConnection):
        raise ProtocolError(ProtocolErrorKind.UNEXPECTED_MESSAGE, f"{type(first).__name__} before InitialConnection")
    if len(messages) > 1:
        raise ProtocolError(ProtocolErrorKind.UNEXPECTED_MESSAGE, "messages batched with InitialConnection")
    return first
