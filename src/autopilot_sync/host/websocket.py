"""`GET /v1/database/:name/subscribe`: the SpacetimeDB v2/v3 WebSocket endpoint, an adapter around the pure parts.

The handshake mirrors `crates/client-api/src/routes/subscribe.rs`: authenticate (401), resolve the database
(400/404), parse `connection_id`/`compression`/`confirmed` (400), pick the subprotocol by the server's preference
(`v3.bsatn.spacetimedb` over `v2.bsatn.spacetimedb`; none → 400 "no valid protocol selected"). As on the real host,
`client_connected` runs after the upgrade and a refusal drops the socket (we add a 1008 close frame with the reducer's
message); `client_disconnected` runs whenever a socket that got past it goes away.
An identity already holding `max_connections_per_identity` sockets gets HTTP 429 before the upgrade (docs/security.md;
the real host has no such cap), and an unmasked client frame closes the socket with 1002 (`frame_mask.py`).

After the upgrade the first message is `InitialConnection`. Client messages are handled in order (v3 frames may hold
several); server messages go through a bounded per-connection queue drained by one writer task, which coalesces v3
messages into frames of at most 512 KiB and compresses bodies over 1 KiB. Every close code and reason is listed in
`CloseReason` and in docs/protocol.md.

Fan-out encodes once: the subscription engine hands the same update object to every client whose update is equal,
the hub encodes each distinct one once into an `EncodedMessage`, and every such client queues that same object; a
message that travels alone in its frame is framed (and compressed) once per compression for all of them. Queues stay
per connection, so ordering and the queue bounds are exactly as before.

Reads are always confirmed, and no answer leaves before what it reveals is durable. Transaction updates are durable
by construction (the engine hands transactions over only once on disk). Every answer — `ReducerResult` (including a
no-op success and an error), `SubscribeApplied`, `UnsubscribeApplied`, `OneOffQueryResult`, `SubscriptionError` —
goes through `Connection.send_at` with the engine offset it observed, and waits in the connection's held queue, in the
order the client asked, until that offset is durable; it is released right after the updates of the transaction at
that offset, so a client sees exactly SpacetimeDB's order: updates up to the state an answer was computed on, then
the answer. Held answers count toward the send-queue bounds from the moment they are held. `confirmed=false` is
accepted and behaves the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from autopilot_sync.host.auth.tokens import TokenService
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.engine import (
    CallOutcome,
    CallStatus,
    ConnectionRejectedError,
    HostEngine,
    StorageUnavailableError,
)
from autopilot_sync.host.frame_mask import MaskEnforcingResponse
from autopilot_sync.host.http_api import TOKENS_KEY, Authenticated, resolve_database_request
from autopilot_sync.host.sql import SqlContext, SqlError, compile_query, execute
from autopilot_sync.host.subscriptions import SubscriptionLimits, SubscriptionManager
from autopilot_sync.host.transaction import CommittedTx
from autopilot_sync.spacetime.errors import DecodeError
from autopilot_sync.spacetime.frames import (
    MAX_MESSAGE_SIZE,
    Compression,
    EncodedMessage,
    frame_messages,
)
from autopilot_sync.spacetime.messages import (
    CallProcedure,
    CallReducer,
    ClientMessage,
    InitialConnection,
    OneOffQuery,
    OneOffQueryResult,
    ProcedureInternalError,
    ProcedureResult,
    QueryRows,
    QuerySetUpdate,
    ReducerErr,
    ReducerInternalError,
    ReducerOk,
    ReducerResult,
    ServerMessage,
    SingleTableRows,
    Subscribe,
    SubscribeApplied,
    TransactionUpdate,
    Unsubscribe,
    UnsubscribeApplied,
    UnsubscribeFlags,
    decode_client_message,
    decode_client_message_prefix,
)
from autopilot_sync.spacetime.rowlist import BsatnRowList
from autopilot_sync.spacetime.values import ConnectionId, Identity, TimeDuration, Timestamp

log = logging.getLogger(__name__)

V3_PROTOCOL = "v3.bsatn.spacetimedb"
V2_PROTOCOL = "v2.bsatn.spacetimedb"
#: Subprotocols we serve, most preferred first (the real host also serves v1, which we do not).
PROTOCOLS = (V3_PROTOCOL, V2_PROTOCOL)


class CloseReason(enum.Enum):
    """Every way the host closes a socket: (close code, reason text). docs/protocol.md has the same table."""

    DECODE_ERROR = (1011, "")  # reason: the decode error's text
    TEXT_FRAME_V2 = (1011, "v2 websocket does not support text messages")
    TEXT_FRAME_V3 = (1011, "v3 websocket does not support text messages")
    SEND_QUEUE_FULL = (1008, "send queue full: client too slow")
    IDLE_TIMEOUT = (1001, "idle timeout: nothing received from the client")
    SHUTTING_DOWN = (1001, "host shutting down")
    STORAGE_FAILED = (1011, "storage failed: the host stopped accepting writes")
    TOKEN_EXPIRED = (1008, "token expired: reconnect with a fresh token")
    CONNECTION_REFUSED = (1008, "")  # reason: the `client_connected` reducer's message
    # SpacetimeDB's text (the `add_subscription_v2` error wrapped in `MessageExecutionError`), N and CLIENT filled in;
    # like every reason it is cut to 123 bytes, which leaves little of the client.
    QUERY_SET_IN_USE = (
        1011,
        "error executing message (reducer: None) (err: Subscription with id QuerySetId { id: N } already exists "
        "for client: CLIENT)",
    )
    MESSAGE_TOO_BIG = (1009, "")  # sent by aiohttp itself: "Message size N exceeds limit M"
    UNMASKED_FRAME = (1002, "")  # sent by aiohttp for the protocol error host/frame_mask.py raises, without a reason

    @property
    def code(self) -> int:
        """The WebSocket close code."""
        return int(self.value[0])

    @property
    def text(self) -> str:
        """The fixed reason text (empty when the reason is the error's own message)."""
        return str(self.value[1])


@dataclass(frozen=True, slots=True)
class WebSocketOptions:
    """Timing and size limits of the endpoint (defaults are the real host's)."""

    ping_interval: float = 15.0
    idle_timeout: float = 30.0
    max_message_bytes: int = MAX_MESSAGE_SIZE
    #: Server messages queued for one client before it counts as too slow (the real host's channel holds 16384).
    send_queue_max_messages: int = 16_384
    #: Encoded bytes queued for one client before it counts as too slow.
    send_queue_max_bytes: int = 256 * 1024 * 1024
    #: How long a server-initiated close waits for the client's close frame before dropping the TCP connection.
    close_timeout: float = 1.0
    #: Sockets one identity may hold at once; one more gets HTTP 429 before the upgrade (only our host limits this).
    max_connections_per_identity: int = 1024
    #: What one connection may subscribe (query sets, queries).
    subscription_limits: SubscriptionLimits = field(default_factory=SubscriptionLimits)


@dataclass(frozen=True, slots=True)
class _ReducerOrigin:
    """`origin` of a reducer transaction called over a socket: tells the commit listener whom to answer."""

    connection: Connection
    request_id: int


class SendQueueFullError(Exception):
    """A client fell too far behind; it is disconnected rather than letting its queue grow without bound."""


class Connection:
    """One upgraded socket: its identity, negotiated protocol, outgoing queue and in-flight reducer calls."""

    def __init__(
        self,
        hub: WebSocketHub,
        ws: web.WebSocketResponse,
        request: web.Request,
        caller: Caller,
        version: int,
        compression: Compression,
    ) -> None:
        self.hub = hub
        self.ws = ws
        self.request = request
        self.caller = caller
        self.version = version
        self.compression = compression
        self.closed = False
        self._queue: deque[EncodedMessage] = deque()
        self._queued_bytes = 0
        self._wakeup = asyncio.Event()
        self._held: deque[tuple[int, EncodedMessage]] = deque()
        self._held_bytes = 0
        self._closing_task: asyncio.Task[None] | None = None
        self.close_reason: CloseReason | None = None  # why the host closed it; None: the client closed or vanished
        self.private_visible = caller.identity == hub.engine.owner_identity

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    # ----- outgoing -----

    def send(self, message: ServerMessage) -> None:
        """Queue a message (encoded now, once); a client over the queue bound is disconnected."""
        if self.closed:
            return
        self.send_encoded(EncodedMessage.of(message))

    def send_encoded(self, message: EncodedMessage) -> None:
        """Queue an encoded message, possibly shared with other connections; over the queue bound: disconnect."""
        if self.closed:
            return
        if not self._room_for(len(message.body)):
            return
        self._queue.append(message)
        self._queued_bytes += len(message.body)
        self._wakeup.set()

    def _room_for(self, size: int) -> bool:
        """Whether one more message of `size` bytes fits the bounds (queued and held alike); if not, disconnect.

        Held answers count from the moment they are held: a client that piles up answers behind a slow fsync is
        as slow as one that does not read, and must not grow the host's memory past the bound meanwhile.
        """
        options = self.hub.options
        messages = len(self._queue) + len(self._held)
        size_total = self._queued_bytes + self._held_bytes + size
        if messages < options.send_queue_max_messages and size_total <= options.send_queue_max_bytes:
            return True
        log.warning(
            "disconnecting %s: %d messages (%d bytes) queued or held",
            self.caller.identity,
            messages,
            self._queued_bytes + self._held_bytes,
        )
        self.close_soon(CloseReason.SEND_QUEUE_FULL)
        return False

    def send_at(self, offset: int, message: ServerMessage) -> None:
        """Send an answer that reveals or depends on the state at engine `offset` once `offset` is durable.

        The one rule for answers (see the module docstring): it leaves after every earlier answer of this
        connection and after the updates of every transaction up to `offset`. `offset` 0: depends on no state,
        only on order.
        """
        if self.closed:
            return
        if offset <= self.hub.engine.durable_offset and not self._held:
            self.send(message)
            return
        encoded = EncodedMessage.of(message)
        if not self._room_for(len(encoded.body)):
            return
        self._held.append((offset, encoded))
        self._held_bytes += len(encoded.body)
        self.hub.holding.add(self)

    def release(self, durable: int) -> None:
        """Queue held answers whose offset is now durable (called by the hub after each durable transaction)."""
        while self._held and self._held[0][0] <= durable:
            _, body = self._held.popleft()
            self._held_bytes -= len(body.body)
            self._enqueue_body(body)
        if not self._held:
            self.hub.holding.discard(self)

    def _enqueue_body(self, body: EncodedMessage) -> None:
        """Move a released answer to the queue (already counted against the bounds while held)."""
        if self.closed:
            return
        self._queue.append(body)
        self._queued_bytes += len(body.body)
        self._wakeup.set()

    async def writer(self) -> None:
        """Drain the queue into frames until the connection closes (v3: coalesced, v2: one message per frame)."""
        while not self.closed:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue and not self.closed:
                messages = list(self._queue)
                self._queue.clear()
                self._queued_bytes = 0
                frames = frame_messages(messages, self.compression, coalesce=self.version == 3)
                for frame in frames:
                    await self.ws.send_bytes(frame)

    async def pinger(self) -> None:
        """Ping every `ping_interval` so idle-but-alive clients answer with a pong (which resets the idle timer)."""
        interval = self.hub.options.ping_interval
        while True:
            await asyncio.sleep(interval)
            if self.closed:
                return
            with contextlib.suppress(Exception):
                await self.ws.ping()

    # ----- closing -----

    def close_soon(self, reason: CloseReason, text: str | None = None) -> None:
        """Start closing from synchronous code (the commit listener); idempotent."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = self.close_reason or reason
        self._queue.clear()
        self._held.clear()
        self._held_bytes = 0
        self.hub.holding.discard(self)
        self._wakeup.set()
        self._closing_task = asyncio.get_running_loop().create_task(self.close(reason, text))

    async def close(self, reason: CloseReason, text: str | None = None) -> None:
        """Send a close frame (waiting briefly for the client's), then drop the TCP connection whatever happened."""
        self.closed = True
        self.close_reason = self.close_reason or reason
        self._wakeup.set()
        message = _close_text(text if text is not None else reason.text)
        try:
            await asyncio.wait_for(self.ws.close(code=reason.code, message=message), self.hub.options.close_timeout)
        except (TimeoutError, asyncio.CancelledError, ConnectionError, RuntimeError):
            pass
        finally:
            transport = self.request.transport
            if transport is not None and not transport.is_closing():
                transport.abort()

    def mark_gone(self) -> None:
        """The socket is finished: stop the writer and drop anything still queued or held."""
        self.closed = True
        self._queue.clear()
        self._held.clear()
        self._held_bytes = 0
        self._wakeup.set()

    async def wait_closing(self) -> None:
        """Wait for a close started by `close_soon` (the slow-consumer kick) to finish."""
        if self._closing_task is not None:
            await asyncio.gather(self._closing_task, return_exceptions=True)


def _close_text(text: str) -> bytes:
    """A close reason fits in 123 bytes of UTF-8 (RFC 6455 §5.5); cut at a character boundary."""
    raw = text.encode("utf-8")
    if len(raw) <= 123:
        return raw
    return raw[:120].decode("utf-8", "ignore").encode("utf-8") + b"..."


class ConnectionEvent(enum.Enum):
    """What happened to a connection attempt, for the reconnect-rate metrics (the reason travels beside it)."""

    OPENED = "opened"
    CLOSED = "closed"
    REFUSED = "refused"


#: Refusals before the upgrade, by HTTP status, as metric reasons.
REFUSAL_REASONS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    429: "too_many_connections",
    503: "unavailable",
}


def close_reason_label(reason: CloseReason | None) -> str:
    """The metric reason of a closed connection: the host's close reason, or `client` (closed or vanished)."""
    return "client" if reason is None else reason.name.lower()


@dataclass(eq=False)
class WebSocketHub:
    """The endpoint's shared state for one database: live connections, the subscription engine, the listener."""

    engine: HostEngine
    options: WebSocketOptions
    connections: set[Connection] = field(default_factory=set)
    holding: set[Connection] = field(default_factory=set)
    #: sockets per identity, counted from the handshake's admission to the socket's end
    per_identity: dict[Identity, int] = field(default_factory=dict)
    subscriptions: SubscriptionManager = field(init=False)
    #: Connections refused after the upgrade, by cause (`client_connected`, `storage_failed`), for /metrics.
    rejections: Counter[str] = field(default_factory=Counter)
    #: Told each refusal's cause as it happens (the host's metrics).
    on_refused: Callable[[str], None] | None = None
    #: Told of every connection opened, closed (by reason) and refused before the upgrade (by reason): metrics.
    on_connection_event: Callable[[ConnectionEvent, str], None] | None = None

    def __post_init__(self) -> None:
        self.subscriptions = SubscriptionManager(
            self.engine.datastore,
            lambda: self.engine.offset,
            lambda: self.engine.durable_offset,
            self.options.subscription_limits,
        )
        self.engine.add_commit_listener(self.on_commit)
        self.engine.add_failure_listener(self.on_storage_failure)
        self._closing_tasks: set[asyncio.Task[None]] = set()

    def report(self, event: ConnectionEvent, reason: str = "") -> None:
        """Tell the observer (metrics) about a connection event; never fails the connection."""
        if self.on_connection_event is not None:
            self.on_connection_event(event, reason)

    def admit(self, identity: Identity) -> bool:
        """Count one more socket for `identity`, or refuse it (False) when the identity holds its maximum."""
        held = self.per_identity.get(identity, 0)
        if held >= self.options.max_connections_per_identity:
            return False
        self.per_identity[identity] = held + 1
        return True

    def release_identity(self, identity: Identity) -> None:
        """A socket counted by `admit` is gone."""
        held = self.per_identity.get(identity, 0) - 1
        if held > 0:
            self.per_identity[identity] = held
        else:
            self.per_identity.pop(identity, None)

    def on_commit(self, tx: CommittedTx) -> None:
        """Fan one durable transaction out: updates (the caller's as its result), then answers held for it.

        Answers held at this offset were computed on the state after this transaction, so they follow its updates,
        exactly as on SpacetimeDB, where a request handled after a commit is answered after that commit's update.
        """
        try:
            self._fan_out(tx)
        finally:
            for connection in list(self.holding):
                connection.release(tx.offset)

    def _fan_out(self, tx: CommittedTx) -> None:
        updates = self.subscriptions.on_commit(tx)
        origin = tx.origin if isinstance(tx.origin, _ReducerOrigin) else None
        caller = origin.connection if origin is not None and origin.connection in self.connections else None
        # Clients with equal updates hold the same tuple: encode each distinct one once (keyed by identity; every
        # tuple stays alive in `updates` for the whole loop, so an id cannot be reused meanwhile).
        encoded: dict[int, EncodedMessage] = {}
        for client, query_sets in updates.items():
            if isinstance(client, Connection) and client is not caller:
                if client.closed:
                    continue
                message = encoded.get(id(query_sets))
                if message is None:
                    message = encoded[id(query_sets)] = EncodedMessage.of(TransactionUpdate(query_sets))
                client.send_encoded(message)
        if caller is not None and origin is not None:
            own: tuple[QuerySetUpdate, ...] = updates.get(caller, ())
            caller.send(ReducerResult(origin.request_id, tx.timestamp, ReducerOk(b"", TransactionUpdate(own))))

    def on_storage_failure(self, error: BaseException) -> None:
        """The commit log failed: answers held back for durability can never go out, so close every socket now."""
        del error
        closing = [c.close(CloseReason.STORAGE_FAILED) for c in list(self.connections)]
        if closing:
            task = asyncio.get_running_loop().create_task(_gather_quietly(closing))
            self._closing_tasks.add(task)
            task.add_done_callback(self._closing_tasks.discard)

    async def close_all(self, app: web.Application) -> None:
        """The app's shutdown hook: close every socket so `client_disconnected` runs before the engine stops."""
        del app
        await asyncio.gather(
            *(c.close(CloseReason.SHUTTING_DOWN) for c in list(self.connections)), return_exceptions=True
        )


async def _gather_quietly(closing: list[Coroutine[Any, Any, None]]) -> None:
    await asyncio.gather(*closing, return_exceptions=True)


HUB_KEY = web.AppKey("autopilot_sync.host.websocket_hub", WebSocketHub)


# ----- the handshake -----


def _choose_protocol(request: web.Request) -> str | None:
    offered: list[str] = []
    for header in request.headers.getall("Sec-WebSocket-Protocol", []):
        offered.extend(p.strip() for p in header.split(",") if p.strip())
    return next((p for p in PROTOCOLS if p in offered), None)


def _bad_request(text: str, auth: Authenticated) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=text, headers=auth.identity_headers())


def _connection_id(request: web.Request, auth: Authenticated) -> ConnectionId:
    raw = request.query.get("connection_id")
    if raw is None:
        return ConnectionId(secrets.randbits(128) or 1)
    try:
        connection_id = ConnectionId.from_hex(raw)
    except ValueError:
        raise _bad_request(
            f"Failed to deserialize query string: invalid connection_id {raw!r}: expected 32 hex digits", auth
        ) from None
    if connection_id.value == 0:
        raise _bad_request("Invalid connection ID: the all-zeros ConnectionId is reserved.", auth)
    return connection_id


def _query_options(request: web.Request, auth: Authenticated) -> Compression:
    try:
        compression = Compression.from_query_param(request.query.get("compression"))
    except ValueError as exc:
        raise _bad_request(f"Failed to deserialize query string: {exc}", auth) from None
    confirmed = request.query.get("confirmed")
    if confirmed is not None and confirmed not in ("true", "false"):
        raise _bad_request(
            f"Failed to deserialize query string: confirmed must be true or false, got {confirmed!r}", auth
        )
    return compression


async def subscribe_handler(request: web.Request) -> web.StreamResponse:
    """The route handler: refuse with an HTTP status before the upgrade, else serve the socket until it goes away."""
    hub = request.app[HUB_KEY]
    try:
        return await _accept(request, hub)
    except web.HTTPException as refusal:
        hub.report(ConnectionEvent.REFUSED, REFUSAL_REASONS.get(refusal.status, str(refusal.status)))
        raise


async def _accept(request: web.Request, hub: WebSocketHub) -> web.StreamResponse:
    engine, auth = await resolve_database_request(request)
    connection_id = _connection_id(request, auth)
    compression = _query_options(request, auth)
    protocol = _choose_protocol(request)
    if protocol is None:
        raise _bad_request("no valid protocol selected", auth)
    ws = MaskEnforcingResponse(
        protocols=(protocol,), max_msg_size=hub.options.max_message_bytes, compress=False, autoping=True
    )
    if not ws.can_prepare(request).ok:
        raise _bad_request("WebSocket upgrade expected: send Connection: Upgrade and Upgrade: websocket", auth)
    caller = auth.caller(connection_id)
    if not hub.admit(caller.identity):
        limit = hub.options.max_connections_per_identity
        raise web.HTTPTooManyRequests(
            text=f"too many connections for this identity: at most {limit} at once; close one first",
            headers=auth.identity_headers(),
        )
    if engine.commitlog.failure is not None:
        hub.release_identity(caller.identity)
        raise web.HTTPServiceUnavailable(
            text=f"storage failed: {engine.commitlog.failure}", headers=auth.identity_headers()
        )
    # As SpacetimeDB's `handle_websocket` (crates/client-api/src/routes/subscribe.rs): upgrade first, then run
    # `client_connected`; a refusal drops the upgraded socket, so an SDK sees a disconnect, not a failed handshake.
    try:
        await ws.prepare(request)
        await engine.connect(caller)
    except ConnectionRejectedError as exc:
        hub.release_identity(caller.identity)
        await _refuse(hub, ws, request, caller, exc)
        return ws
    except BaseException:
        hub.release_identity(caller.identity)
        raise
    connection = Connection(hub, ws, request, caller, 3 if protocol == V3_PROTOCOL else 2, compression)
    expiry: asyncio.TimerHandle | None = None
    try:
        hub.connections.add(connection)
        hub.report(ConnectionEvent.OPENED)
        connection.send(InitialConnection(caller.identity, connection_id, auth.token.token))
        expiry = _close_at_rights_end(connection, request.app[TOKENS_KEY].rights_end(auth.token))
        await _serve(connection)
    finally:
        if connection in hub.connections:
            hub.report(ConnectionEvent.CLOSED, close_reason_label(connection.close_reason))
        if expiry is not None:
            expiry.cancel()
        connection.mark_gone()
        hub.connections.discard(connection)
        hub.holding.discard(connection)
        hub.subscriptions.remove_client(connection)
        hub.release_identity(caller.identity)
        await asyncio.shield(engine.disconnect(caller))
    return ws


async def _refuse(
    hub: WebSocketHub, ws: web.WebSocketResponse, request: web.Request, caller: Caller, error: ConnectionRejectedError
) -> None:
    """Close an upgraded socket `client_connected` refused; the reason goes to the log, the counters and the client.

    SpacetimeDB drops the socket without a close frame (its reason reaches only its log and
    `record_client_rejection`); we close with 1008 and the reducer's message so a client can tell the user why. The
    official SDK reports both the same way: `onDisconnect`.
    """
    storage = isinstance(error, StorageUnavailableError)
    cause = "storage_failed" if storage else "client_connected"
    hub.rejections[cause] += 1
    if hub.on_refused is not None:
        hub.on_refused(cause)
    log.info("websocket: refusing connection of %s (%s): %s", caller.identity, cause, error)
    reason = CloseReason.STORAGE_FAILED if storage else CloseReason.CONNECTION_REFUSED
    try:
        await asyncio.wait_for(ws.close(code=reason.code, message=_close_text(str(error))), hub.options.close_timeout)
    except (TimeoutError, ConnectionError, RuntimeError):
        pass
    finally:
        transport = request.transport
        if transport is not None and not transport.is_closing():
            transport.abort()


def _close_at_rights_end(connection: Connection, deadline: float | None) -> asyncio.TimerHandle | None:
    """Close the socket with 1008 `token expired` when the token it was opened with stops granting anything.

    `deadline` is the origin token's expiry plus the leeway (wall-clock seconds; None: the host's own non-expiring
    anonymous tokens, whose sockets live as long as on SpacetimeDB). The short token from
    `/v1/identity/websocket-token` only admitted the upgrade; what a socket may do ends with the token it came from.
    """
    if deadline is None:
        return None

    def expire() -> None:
        log.info("closing the socket of %s: its token expired", connection.caller.identity)
        connection.close_soon(CloseReason.TOKEN_EXPIRED)

    return asyncio.get_running_loop().call_later(max(deadline - time.time(), 0.0), expire)


async def _serve(connection: Connection) -> None:
    writer = asyncio.create_task(connection.writer())
    pinger = asyncio.create_task(connection.pinger())
    try:
        await _read_loop(connection, writer)
    finally:
        for task in (writer, pinger):
            task.cancel()
        await asyncio.gather(writer, pinger, return_exceptions=True)
        await connection.wait_closing()
        if not connection.ws.closed:
            # The writer failed (the peer vanished mid-send): nobody is left to read a close frame.
            transport = connection.request.transport
            if transport is not None:
                transport.abort()


async def _read_loop(connection: Connection, writer: asyncio.Task[None]) -> None:
    ws = connection.ws
    options = connection.hub.options
    while not connection.closed:
        receive = asyncio.ensure_future(ws.receive(timeout=options.idle_timeout))
        done, _ = await asyncio.wait({receive, writer}, return_when=asyncio.FIRST_COMPLETED)
        if receive not in done:
            # The writer died (the peer vanished mid-send): stop reading too.
            receive.cancel()
            await asyncio.gather(receive, return_exceptions=True)
            return
        try:
            msg = receive.result()
        except TimeoutError:
            await connection.close(CloseReason.IDLE_TIMEOUT)
            return
        if msg.type is WSMsgType.BINARY:
            error = await _handle_frame(connection, msg.data)
            if error is not None:
                await connection.close(CloseReason.DECODE_ERROR, error)
                return
        elif msg.type is WSMsgType.TEXT:
            reason = CloseReason.TEXT_FRAME_V3 if connection.version == 3 else CloseReason.TEXT_FRAME_V2
            await connection.close(reason)
            return
        else:  # CLOSE, CLOSING, CLOSED, ERROR (aiohttp already answered protocol errors, e.g. 1009)
            return


async def _handle_frame(connection: Connection, data: bytes) -> str | None:
    """Handle each message of a frame in order; the decode error's text when a message does not decode.

    v3 frames are decoded one message at a time, as the real host does: messages before an undecodable one run.
    """
    if connection.version == 2:
        try:
            message = decode_client_message(data)
        except DecodeError as exc:
            return str(exc)
        await _handle(connection, message)
        return None
    if not data:
        return "v3 websocket binary payload must contain at least one v2 client message"
    offset = 0
    while offset < len(data) and not connection.closed:
        try:
            message, offset = decode_client_message_prefix(data, offset)
        except DecodeError as exc:
            return str(exc)
        await _handle(connection, message)
    return None


# ----- client messages -----


async def _handle(connection: Connection, message: ClientMessage) -> None:
    hub = connection.hub
    engine = hub.engine
    if isinstance(message, CallReducer):
        # The transaction runs here, before the next message is read, so messages after a call (a subscribe, another
        # call) see its effects, in the order the client sent them; the answer goes out once it is durable.
        _call_reducer(connection, message)
    elif isinstance(message, Subscribe):
        if hub.subscriptions.is_subscribed(connection, message.query_set_id):
            # SpacetimeDB: `add_subscription_v2` (crates/core/src/subscription/module_subscription_manager.rs) errors,
            # and crates/client-api/src/routes/subscribe.rs closes the socket with CloseCode::Error (1011).
            caller = connection.caller
            text = CloseReason.QUERY_SET_IN_USE.text.replace("{ id: N }", f"{{ id: {message.query_set_id} }}").replace(
                "CLIENT", f"(Identity({caller.identity}), ConnectionId({caller.connection_id}))"
            )
            await connection.close(CloseReason.QUERY_SET_IN_USE, text)
            return
        result = hub.subscriptions.subscribe(
            connection,
            message.request_id,
            message.query_set_id,
            message.query_strings,
            sender=connection.caller.identity,
            private_visible=connection.private_visible,
        )
        connection.send_at(engine.offset if isinstance(result, SubscribeApplied) else 0, result)
    elif isinstance(message, Unsubscribe):
        unsubscribed = hub.subscriptions.unsubscribe(
            connection,
            message.request_id,
            message.query_set_id,
            send_dropped_rows=message.flags is UnsubscribeFlags.SEND_DROPPED_ROWS,
        )
        connection.send_at(engine.offset if isinstance(unsubscribed, UnsubscribeApplied) else 0, unsubscribed)
    elif isinstance(message, OneOffQuery):
        connection.send_at(engine.offset, _one_off(connection, message))
    elif isinstance(message, CallProcedure):
        connection.send_at(
            0,
            ProcedureResult(
                ProcedureInternalError("procedures are not supported by this host"),
                Timestamp.now(),
                TimeDuration(0),
                message.request_id,
            ),
        )


def _one_off(connection: Connection, message: OneOffQuery) -> OneOffQueryResult:
    datastore = connection.hub.engine.datastore
    ctx = SqlContext(
        datastore,
        private_visible=connection.private_visible,
        sender=connection.caller.identity,
    )
    try:
        plan = compile_query(message.query_string, ctx)
        if not plan.returns_rows:
            raise SqlError(
                "Column projections and aggregates are not supported over the WebSocket (rows must be whole table "
                "rows); use HTTP POST /v1/database/:name/sql"
            )
        result = execute(plan, datastore)
    except SqlError as exc:
        return OneOffQueryResult(message.request_id, str(exc))
    row_bytes = result.row_bytes or ()
    rows = QueryRows((SingleTableRows(plan.table.name, BsatnRowList.from_rows(list(row_bytes))),))
    return OneOffQueryResult(message.request_id, rows)


def _call_reducer(connection: Connection, message: CallReducer) -> None:
    engine = connection.hub.engine
    reducer = engine.reducer(message.reducer)
    if reducer is None:
        # crates/core/src/host/module_host.rs `ReducerCallError::NoSuchReducer` carries no name.
        _reducer_failed(connection, message, "no such reducer")
        return
    if reducer.lifecycle is not None:
        # SpacetimeDB's `ReducerCallError::LifecycleReducer` text (crates/core/src/host/module_host.rs).
        text = f"can't directly call special {reducer.lifecycle.value} lifecycle reducer"
        _reducer_failed(connection, message, text)
        return
    try:
        args = engine.decode_args(reducer, message.args)
    except DecodeError as exc:
        _reducer_failed(connection, message, f"invalid arguments for reducer {message.reducer}: {exc}")
        return
    request_id = message.request_id

    def answer(outcome: CallOutcome) -> None:
        # A call that wrote nothing (a duplicate, an error) still reveals the state it saw: held until durable.
        if outcome.status is CallStatus.COMMITTED:
            if outcome.tx is None or not outcome.tx.changes:
                ok = ReducerOk(b"", TransactionUpdate(()))
                connection.send_at(outcome.offset, ReducerResult(request_id, outcome.timestamp, ok))
            return  # otherwise the commit listener already answered, in commit order
        if outcome.status is CallStatus.USER_ERROR:
            error = _bsatn_string(outcome.message)
            connection.send_at(outcome.offset, ReducerResult(request_id, outcome.timestamp, ReducerErr(error)))
            return
        failed = ReducerInternalError(outcome.message)
        connection.send_at(outcome.offset, ReducerResult(request_id, outcome.timestamp, failed))

    engine.start_call(message.reducer, args, connection.caller, _ReducerOrigin(connection, request_id), answer)


def _reducer_failed(connection: Connection, message: CallReducer, text: str) -> None:
    connection.send_at(0, ReducerResult(message.request_id, Timestamp.now(), ReducerInternalError(text)))


def _bsatn_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return len(raw).to_bytes(4, "little") + raw


# ----- mounting -----


def add_websocket_route(
    app: web.Application,
    engine: HostEngine,
    tokens: TokenService | None = None,
    *,
    max_message_bytes: int | None = None,
    options: WebSocketOptions | None = None,
) -> WebSocketHub:
    """Mount `GET /v1/database/{name}/subscribe` for `engine` (after `add_http_routes`, whose auth it shares)."""
    chosen = options or WebSocketOptions()
    if max_message_bytes is not None:
        chosen = dataclasses.replace(chosen, max_message_bytes=max_message_bytes)
    if tokens is not None and TOKENS_KEY not in app:
        app[TOKENS_KEY] = tokens
    hub = WebSocketHub(engine, chosen)
    app[HUB_KEY] = hub
    app.router.add_get("/v1/database/{name}/subscribe", subscribe_handler)
    app.on_shutdown.append(hub.close_all)
    return hub


def live_connections(app: web.Application) -> Iterable[Connection]:
    """The sockets currently served (for status pages and tests)."""
    return tuple(app[HUB_KEY].connections)
