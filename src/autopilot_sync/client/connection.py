"""One WebSocket session with a Spacetime host: negotiation, frames, request ids, and routing answers to callers.

`connect()` trades the caller's token for a short-lived one, opens `GET /v1/database/:name/subscribe` offering
`v3.bsatn.spacetimedb` then `v2.bsatn.spacetimedb`, and waits for `InitialConnection`. After that one reader task
decodes every frame; each message is checked against what this connection has asked for (query sets, request ids)
and fully decoded before it touches the cache. Anything the protocol forbids closes the connection with a
`ProtocolError` as the reason, fails every waiting call, and leaves the cache exactly as the last good message left it.
The session does not reconnect: that is `reconnect.SyncClient`'s job.
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

from autopilot_sync.client.auth import exchange_websocket_token
from autopilot_sync.client.cache import ChangeCause, ClientCache
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
from autopilot_sync.client.query_set import QuerySet, QuerySetState
from autopilot_sync.client.results import (
    QueryResult,
    QueryTable,
    ReducerCallResult,
    ReducerCommitted,
    ReducerFailed,
    ReducerInternalError,
)
from autopilot_sync.client.schema import ClientSchema, RowFactory, fetch_schema
from autopilot_sync.client.updates import ops_from_query_rows, ops_from_transaction
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime import messages as m
from autopilot_sync.spacetime.errors import DecodeError
from autopilot_sync.spacetime.frames import (
    MAX_MESSAGE_SIZE,
    V3_CLIENT_FRAME_CAP,
    Compression,
    batch_bodies,
    decode_server_frame,
    split_server_body,
)
from autopilot_sync.spacetime.values import ConnectionId, Identity

log = logging.getLogger(__name__)

PROTOCOL_V3 = "v3.bsatn.spacetimedb"
PROTOCOL_V2 = "v2.bsatn.spacetimedb"
#: Offered in this order; the server picks by its own preference among them.
OFFERED_PROTOCOLS = (PROTOCOL_V3, PROTOCOL_V2)
#: WebSocket close code sent when the server broke the protocol (RFC 6455 1002).
CLOSE_PROTOCOL_ERROR = 1002
_U32_MASK = 0xFFFFFFFF
_ERR_TEXT = bsatn.codec(at.STRING)


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
    """Seconds between client pings; a missing pong closes the connection (None: rely on the server's pings)."""
    max_message_bytes: int = MAX_MESSAGE_SIZE
    """Largest frame (and decompressed body) accepted."""


class _Phase(enum.Enum):
    PENDING = "pending"
    APPLIED = "applied"
    UNSUBSCRIBING = "unsubscribing"


@dataclass(slots=True)
class _Tracked:
    query_set: QuerySet
    phase: _Phase
    request_id: int


class Connection:
    """A live session; build one with `connect()`."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        owns_session: bool,
        ws: aiohttp.ClientWebSocketResponse,
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
        self._session = session
        self._owns_session = owns_session
        self._ws = ws
        self._next_request = 0
        self._next_query_set = 0
        self._query_sets: dict[int, _Tracked] = {}
        self._unsubscribes: dict[int, asyncio.Future[None]] = {}
        self._calls: dict[int, tuple[str, asyncio.Future[ReducerCallResult]]] = {}
        self._one_offs: dict[int, asyncio.Future[QueryResult]] = {}
        self._close_info: CloseInfo | None = None
        #: client messages and WebSocket frames sent so far (v3 coalesces messages into fewer frames)
        self.messages_sent = 0
        self.frames_sent = 0
        self._outbox: list[bytes] = []
        self._flush: asyncio.Task[None] | None = None
        self._last_flush: asyncio.Task[None] | None = None
        self._closed = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read_loop(), name=f"spacetime-reader-{self.connection_id.hex[:8]}")

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
        if self._reader is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        return await self.wait_closed()

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _shutdown(self, info: CloseInfo) -> None:
        if self._close_info is not None:
            return
        self._close_info = info
        if info.reason is CloseReason.PROTOCOL_ERROR:
            log.warning("closing connection %s: %s", self.connection_id.hex[:8], info.message)
        lost = ConnectionLostError(f"connection closed: {info.message}", info.error)
        for _, future in self._calls.values():
            if not future.done():
                future.set_exception(lost)
        for one_off in self._one_offs.values():
            if not one_off.done():
                one_off.set_exception(lost)
        for unsubscribe in self._unsubscribes.values():
            if not unsubscribe.done():
                unsubscribe.set_exception(lost)
        self._calls.clear()
        self._one_offs.clear()
        self._unsubscribes.clear()
        for tracked in self._query_sets.values():
            tracked.query_set.connection_lost(info.message)
        self._query_sets.clear()
        code = CLOSE_PROTOCOL_ERROR if info.reason is CloseReason.PROTOCOL_ERROR else aiohttp.WSCloseCode.OK
        with contextlib.suppress(Exception):
            await self._ws.close(code=code, message=info.message[:120].encode())
        if self._owns_session:
            with contextlib.suppress(Exception):
                await self._session.close()
        if not self._closed.done():
            self._closed.set_result(info)

    # ----- requests -----

    def _request_id(self) -> int:
        self._next_request = (self._next_request + 1) & _U32_MASK
        return self._next_request

    async def _send(self, message: m.ClientMessage) -> None:
        """Send one message; on v3, messages sent in the same event-loop turn share frames (in order).

        v3 lets a binary frame carry several client messages; like the official SDK's v3 outbound queue, we coalesce
        what is queued before the next flush into frames of at most `V3_CLIENT_FRAME_CAP` bytes (`batch_bodies`).
        Returns once the frame holding this message was written; ConnectionLostError when it could not be.
        """
        if self._close_info is not None:
            raise ConnectionLostError(f"connection closed: {self._close_info.message}", self._close_info.error)
        body = m.encode_client_message(message)
        self.messages_sent += 1
        if self.protocol != PROTOCOL_V3:
            await self._write(body)
            return
        self._outbox.append(body)
        if self._flush is None:
            self._flush = asyncio.get_running_loop().create_task(self._flush_outbox(self._last_flush))
            self._flush.add_done_callback(_retrieve)
            self._last_flush = self._flush
        await asyncio.shield(self._flush)

    async def _flush_outbox(self, previous: asyncio.Task[None] | None) -> None:
        await asyncio.sleep(0)  # let every message sent in this turn join the frame
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)  # frames leave in order
        bodies, self._outbox, self._flush = self._outbox, [], None
        for batch in batch_bodies(bodies, V3_CLIENT_FRAME_CAP):
            await self._write(b"".join(batch))

    async def _write(self, frame: bytes) -> None:
        if self._close_info is not None:
            raise ConnectionLostError(f"connection closed: {self._close_info.message}", self._close_info.error)
        try:
            await self._ws.send_bytes(frame)
        except (ConnectionError, aiohttp.ClientError) as exc:
            await self._shutdown(CloseInfo(CloseReason.NETWORK_ERROR, f"send failed: {exc}", error=exc))
            raise ConnectionLostError(f"send failed: {exc}", exc) from exc
        self.frames_sent += 1

    async def subscribe(self, queries: Sequence[str], *, query_set: QuerySet | None = None) -> QuerySet:
        """Subscribe a new query set (or re-attach a managed one); returns at once: `await qs.applied()` for rows."""
        if query_set is None:
            self._next_query_set = (self._next_query_set + 1) & _U32_MASK
            query_set = QuerySet(self._next_query_set, queries, self)
        else:
            query_set.mark_pending(queries)
            self._next_query_set = max(self._next_query_set, query_set.id)
        if query_set.id in self._query_sets:
            raise ValueError(f"query set {query_set.id} is already live on this connection")
        request_id = self._request_id()
        self._query_sets[query_set.id] = _Tracked(query_set, _Phase.PENDING, request_id)
        try:
            await self._send(m.Subscribe(request_id, query_set.id, tuple(query_set.queries)))
        except ConnectionLostError:
            self._query_sets.pop(query_set.id, None)
            query_set.connection_lost("connection closed before the subscription was sent")
            raise
        return query_set

    async def unsubscribe(self, query_set: QuerySet) -> None:
        """End a query set; its rows leave the cache when the server confirms with `UnsubscribeApplied`."""
        tracked = self._query_sets.get(query_set.id)
        if tracked is None or tracked.query_set is not query_set:
            if query_set.state not in (QuerySetState.ENDED, QuerySetState.ERROR):
                query_set.mark_ended("unsubscribed")
            return
        if tracked.phase is _Phase.UNSUBSCRIBING:
            await asyncio.shield(self._unsubscribes[tracked.request_id])
            return
        request_id = self._request_id()
        tracked.phase = _Phase.UNSUBSCRIBING
        tracked.request_id = request_id
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._unsubscribes[request_id] = future
        await self._send(m.Unsubscribe(request_id, query_set.id, m.UnsubscribeFlags.DEFAULT))
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
        return await self.call_raw(reducer, payload)

    async def call_raw(self, reducer: str, args: bytes) -> ReducerCallResult:
        """Call a reducer with already encoded arguments (no schema check)."""
        request_id = self._request_id()
        future: asyncio.Future[ReducerCallResult] = asyncio.get_running_loop().create_future()
        self._calls[request_id] = (reducer, future)
        try:
            await self._send(m.CallReducer(request_id, m.CallReducerFlags.DEFAULT, reducer, args))
        except ConnectionLostError:
            self._calls.pop(request_id, None)
            raise
        return await future

    async def one_off_query(self, sql: str) -> QueryResult:
        """Run one SQL query once; `OneOffQueryError` with the server's message when it is refused."""
        request_id = self._request_id()
        future: asyncio.Future[QueryResult] = asyncio.get_running_loop().create_future()
        self._one_offs[request_id] = future
        try:
            await self._send(m.OneOffQuery(request_id, sql))
        except ConnectionLostError:
            self._one_offs.pop(request_id, None)
            raise
        return await future

    def in_flight(self) -> list[asyncio.Future[Any]]:
        """Futures of the reducer calls and one-off queries not answered yet (a retiring session waits for them)."""
        calls: list[asyncio.Future[Any]] = [future for _, future in self._calls.values()]
        return calls + list(self._one_offs.values())

    def query_sets(self) -> list[QuerySet]:
        """Query sets live on this connection."""
        return [t.query_set for t in self._query_sets.values()]

    # ----- reading -----

    async def _read_loop(self) -> None:
        info: CloseInfo
        try:
            async for frame in self._ws:
                if frame.type is aiohttp.WSMsgType.BINARY:
                    self._on_frame(frame.data)
                elif frame.type is aiohttp.WSMsgType.TEXT:
                    raise ProtocolError(ProtocolErrorKind.TEXT_FRAME, "text frame on a binary protocol")
                elif frame.type is aiohttp.WSMsgType.ERROR:
                    error = self._ws.exception()
                    info = CloseInfo(CloseReason.NETWORK_ERROR, f"websocket error: {error}", error=error)
                    break
            else:
                code = self._ws.close_code
                error = self._ws.exception()
                if error is not None:
                    info = CloseInfo(CloseReason.NETWORK_ERROR, f"websocket error: {error}", code, error)
                else:
                    info = CloseInfo(CloseReason.SERVER_CLOSED, f"closed by the server (code {code})", code)
        except ProtocolError as exc:
            info = CloseInfo(CloseReason.PROTOCOL_ERROR, str(exc), CLOSE_PROTOCOL_ERROR, exc)
        except (aiohttp.ClientError, ConnectionError) as exc:
            info = CloseInfo(CloseReason.NETWORK_ERROR, f"network error: {exc}", error=exc)
        except asyncio.CancelledError:
            info = CloseInfo(CloseReason.CLIENT_CLOSED, "reader cancelled")
        await self._shutdown(info)

    def _on_frame(self, data: bytes) -> None:
        for message in decode_frame(data, self.protocol, self.options.max_message_bytes):
            if self._close_info is not None:
                return
            self.handle(message)

    def handle(self, message: m.ServerMessage) -> None:
        """Apply one decoded server message; raises `ProtocolError` (before any change) when it is not allowed."""
        if isinstance(message, m.TransactionUpdate):
            self._check_query_sets(message)
            self.cache.apply(ops_from_transaction(self.schema, message), ChangeCause.TRANSACTION)
        elif isinstance(message, m.ReducerResult):
            self._on_reducer_result(message)
        elif isinstance(message, m.SubscribeApplied):
            self._on_subscribe_applied(message)
        elif isinstance(message, m.UnsubscribeApplied):
            self._on_unsubscribe_applied(message)
        elif isinstance(message, m.SubscriptionError):
            self._on_subscription_error(message)
        elif isinstance(message, m.OneOffQueryResult):
            self._on_one_off(message)
        elif isinstance(message, m.InitialConnection):
            raise ProtocolError(ProtocolErrorKind.UNEXPECTED_MESSAGE, "a second InitialConnection")
        else:
            raise ProtocolError(ProtocolErrorKind.UNKNOWN_REQUEST, f"{type(message).__name__} for a request never sent")

    def _check_query_sets(self, update: m.TransactionUpdate) -> None:
        for query_set in update.query_sets:
            tracked = self._query_sets.get(query_set.query_set_id)
            if tracked is None or tracked.phase is _Phase.PENDING:
                raise ProtocolError(
                    ProtocolErrorKind.UNKNOWN_QUERY_SET,
                    f"update for query set {query_set.query_set_id}, which is not subscribed",
                )

    def _on_reducer_result(self, message: m.ReducerResult) -> None:
        entry = self._calls.get(message.request_id)
        if entry is None:
            raise ProtocolError(ProtocolErrorKind.UNKNOWN_REQUEST, f"ReducerResult for request {message.request_id}")
        reducer, future = entry
        outcome = message.result
        result: ReducerCallResult
        if isinstance(outcome, m.ReducerOk):
            self._check_query_sets(outcome.transaction_update)
            ops = ops_from_transaction(self.schema, outcome.transaction_update)
            del self._calls[message.request_id]
            changes = self.cache.apply(ops, ChangeCause.REDUCER_RESULT)
            result = ReducerCommitted(reducer, message.timestamp, tuple(changes), outcome.ret_value)
        elif isinstance(outcome, m.ReducerOkEmpty):
            del self._calls[message.request_id]
            result = ReducerCommitted(reducer, message.timestamp, ())
        elif isinstance(outcome, m.ReducerErr):
            del self._calls[message.request_id]
            try:
                text: str = _ERR_TEXT.decode(outcome.error)
            except DecodeError:
                text = outcome.error.decode("utf-8", "replace")
            result = ReducerFailed(reducer, message.timestamp, text)
        else:
            del self._calls[message.request_id]
            result = ReducerInternalError(reducer, message.timestamp, outcome.message)
        if not future.done():
            future.set_result(result)

    def _on_subscribe_applied(self, message: m.SubscribeApplied) -> None:
        tracked = self._query_sets.get(message.query_set_id)
        if tracked is None or tracked.phase is not _Phase.PENDING or tracked.request_id != message.request_id:
            raise ProtocolError(
                ProtocolErrorKind.UNKNOWN_QUERY_SET,
                f"SubscribeApplied for query set {message.query_set_id} (request {message.request_id}), "
                "which is not awaiting its rows",
            )
        ops = ops_from_query_rows(self.schema, message.query_set_id, message.rows, insert=True)
        tracked.phase = _Phase.APPLIED
        self.cache.apply(ops, ChangeCause.SUBSCRIBE_APPLIED)
        tracked.query_set.mark_applied()

    def _on_unsubscribe_applied(self, message: m.UnsubscribeApplied) -> None:
        tracked = self._query_sets.get(message.query_set_id)
        future = self._unsubscribes.get(message.request_id)
        if tracked is None or tracked.phase is not _Phase.UNSUBSCRIBING or future is None:
            raise ProtocolError(
                ProtocolErrorKind.UNKNOWN_QUERY_SET,
                f"UnsubscribeApplied for query set {message.query_set_id} (request {message.request_id})",
            )
        del self._query_sets[message.query_set_id]
        del self._unsubscribes[message.request_id]
        self.cache.release_query_set(message.query_set_id, ChangeCause.UNSUBSCRIBED)
        tracked.query_set.mark_ended("unsubscribed")
        if not future.done():
            future.set_result(None)

    def _on_subscription_error(self, message: m.SubscriptionError) -> None:
        tracked = self._query_sets.get(message.query_set_id)
        if tracked is None:
            raise ProtocolError(
                ProtocolErrorKind.UNKNOWN_QUERY_SET, f"SubscriptionError for unknown query set {message.query_set_id}"
            )
        del self._query_sets[message.query_set_id]
        self.cache.release_query_set(message.query_set_id, ChangeCause.SUBSCRIPTION_DROPPED)
        tracked.query_set.mark_error(message.error)
        future = self._unsubscribes.pop(tracked.request_id, None)
        if future is not None and not future.done():
            future.set_result(None)

    def _on_one_off(self, message: m.OneOffQueryResult) -> None:
        future = self._one_offs.pop(message.request_id, None)
        if future is None:
            raise ProtocolError(ProtocolErrorKind.UNKNOWN_REQUEST, f"OneOffQueryResult for {message.request_id}")
        if isinstance(message.result, str):
            future.set_exception(OneOffQueryError(message.result))
            return
        tables = []
        for single in message.result.tables:
            try:
                raw = tuple(single.rows.rows())
            except DecodeError as exc:
                raise ProtocolError(ProtocolErrorKind.BAD_ROW, f"one-off rows of {single.table}: {exc}") from None
            decoded: tuple[Any, ...] = ()
            table = self.schema.tables.get(single.table)
            if table is not None:
                try:
                    decoded = tuple(table.decode(row)[1] for row in raw)
                except DecodeError:
                    decoded = ()
            tables.append(QueryTable(single.table, decoded, raw))
        future.set_result(QueryResult(tuple(tables)))


def decode_frame(data: bytes, protocol: str, max_size: int = MAX_MESSAGE_SIZE) -> list[m.ServerMessage]:
    """Every server message in one binary frame; `ProtocolError` for anything undecodable (v2: exactly one)."""
    try:
        messages = split_server_body(decode_server_frame(data, max_size))
    except DecodeError as exc:
        raise ProtocolError(ProtocolErrorKind.UNDECODABLE_FRAME, str(exc)) from None
    if protocol == PROTOCOL_V2 and len(messages) != 1:
        raise ProtocolError(ProtocolErrorKind.UNDECODABLE_FRAME, f"v2 frame holds {len(messages)} messages")
    return messages


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

    With `token`, it is traded for a short-lived WebSocket token first (`AuthenticationError` when refused); without
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
        if token:
            params["token"] = await exchange_websocket_token(client, http_base, token)
        if opts.confirmed is not None:
            params["confirmed"] = "true" if opts.confirmed else "false"
        ws = await _open(client, subscribe_url(http_base, database), params, opts)
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


def _retrieve(task: asyncio.Task[None]) -> None:
    """Mark a flush's failure as seen (its senders got it as ConnectionLostError)."""
    if not task.cancelled():
        task.exception()


async def _open(
    client: aiohttp.ClientSession, url: str, params: dict[str, str], opts: ConnectOptions
) -> aiohttp.ClientWebSocketResponse:
    try:
        return await client.ws_connect(
            url,
            params=params,
            protocols=opts.protocols,
            heartbeat=opts.heartbeat,
            max_msg_size=opts.max_message_bytes,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
            autoping=True,
        )
    except aiohttp.WSServerHandshakeError as exc:
        if exc.status == 401:
            raise AuthenticationError(f"the server refused the token: {exc.message}", status=401) from exc
        raise ConnectError(f"WebSocket handshake refused: {exc.status} {exc.message}", status=exc.status) from exc
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise ConnectError(f"cannot open {url}: {exc}") from exc


async def _initial_connection(
    ws: aiohttp.ClientWebSocketResponse, protocol: str, opts: ConnectOptions
) -> m.InitialConnection:
    try:
        async with asyncio.timeout(opts.handshake_timeout):
            frame = await ws.receive()
    except TimeoutError:
        raise ConnectError(f"no InitialConnection within {opts.handshake_timeout} s") from None
    if frame.type is aiohttp.WSMsgType.TEXT:
        raise ProtocolError(ProtocolErrorKind.TEXT_FRAME, "text frame on a binary protocol")
    if frame.type is not aiohttp.WSMsgType.BINARY:
        # The host upgrades before `client_connected` runs (as SpacetimeDB), so a refusal arrives as a close here.
        code = ws.close_code if frame.type is aiohttp.WSMsgType.CLOSE else None
        reason = str(frame.extra or "") if frame.type is aiohttp.WSMsgType.CLOSE else ""
        said = f": {reason}" if reason else f" ({frame.type.name}, no reason given)"
        raise ConnectionRejectedError(f"the server refused the connection{said}", code, reason)
    messages = decode_frame(frame.data, protocol, opts.max_message_bytes)
    first = messages[0]
    if not isinstance(first, m.InitialConnection):
        raise ProtocolError(ProtocolErrorKind.UNEXPECTED_MESSAGE, f"{type(first).__name__} before InitialConnection")
    if len(messages) > 1:
        raise ProtocolError(ProtocolErrorKind.UNEXPECTED_MESSAGE, "messages batched with InitialConnection")
    return first
