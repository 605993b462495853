"""`GET /v1/database/:name/subscribe`: the SpacetimeDB v2/v3 WebSocket endpoint, an adapter around the pure parts.

The handshake mirrors `crates/client-api/src/routes/subscribe.rs`: authenticate (401), resolve the database
(400/404), then `ws_handshake.py` reads `connection_id`/`compression`/`confirmed` (400) and picks the subprotocol by
the server's preference (v3, v2, `v1.bsatn`, `v1.json`; none → 400 "no valid protocol selected"; v1 speaks through
the codec in `session_v1.py`). As on the real host,
`client_connected` runs after the upgrade and a refusal drops the socket (we add a 1008 close frame with the reducer's
message); `client_disconnected` runs whenever a socket that got past it goes away.
An identity already holding `max_connections_per_identity` sockets gets HTTP 429 before the upgrade (docs/security.md;
the real host has no such cap), and an unmasked client frame closes the socket with 1002 (`frame_mask.py`).

After the upgrade the first message is `InitialConnection`. Everything after that is the protocol state machine in
`session.py` (`ServerSession`, sans-I/O): which query sets the connection holds, the order of its answers, the held
queue that keeps each answer until what it reveals is durable (`send_at`), the send-queue bounds, and every close
code and reason (`CloseReason`, also in docs/protocol.md). This module is its adapter: the handshake, the read loop
that feeds frames to the session, a writer task started when the session has frames and ended once they are written
(v3: coalesced into frames of at most 512 KiB, bodies over 1 KiB compressed), pings from a timer, the close handshake,
and the hub that
fans each durable transaction out and then releases held answers. A `Connection` is the session's `SessionBackend`:
subscriptions go to the hub's `SubscriptionManager`, one-off queries to the SQL engine, reducer calls to the
engine's one call path (`HostEngine.start_call`).

Fan-out encodes once: the subscription engine hands the same update object to every client whose update is equal,
the hub encodes each distinct one once into an `EncodedMessage`, and every such client queues that same object; a
message that travels alone in its frame is framed (and compressed) once per compression for all of them. Queues stay
per connection, so ordering and the queue bounds are exactly as before.

Reads are always confirmed, and no answer leaves before what it reveals is durable: transaction updates are durable
by construction (evaluated while the commit's fsync runs, they wait in the hub's `UpdateQueue` and are sent from
the engine's commit listener, which hears a transaction only once on disk), and every answer waits in the session's
held queue as described in `session.py`; the hub releases answers held at an offset right after the updates of the
transaction at that offset. `confirmed=false` is accepted and behaves the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import struct
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http import WSMsgType  # not the package's name: its `__init__` loads aiohttp's client

from autopilot_sync.host.auth.tokens import TokenService
from autopilot_sync.host.call_outcome import CallOutcome
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.engine import ConnectionRejectedError, HostEngine, StorageUnavailableError
from autopilot_sync.host.frame_mask import MaskEnforcingResponse
from autopilot_sync.host.http_api import TOKENS_KEY, resolve_database_request
from autopilot_sync.host.liveness import ConnectionDebt, bytes_acked, quiet_since, unread_bytes
from autopilot_sync.host.procedure_call import ProcedureOutcome
from autopilot_sync.host.session import CloseReason, SendBounds, ServerSession, close_text
from autopilot_sync.host.sql import SqlContext, SqlError, compile_query, execute
from autopilot_sync.host.subscriptions import SubscriptionLimits, SubscriptionManager
from autopilot_sync.host.transaction import CommittedTx
from autopilot_sync.host.update_queue import UpdateQueue
from autopilot_sync.host.ws_handshake import bad_request, read_upgrade
from autopilot_sync.spacetime.frames import (
    MAX_MESSAGE_SIZE,
    Compression,
    EncodedMessage,
)
from autopilot_sync.spacetime.messages import (
    CallProcedure,
    CallReducer,
    InitialConnection,
    OneOffQuery,
    OneOffQueryResult,
    QueryRows,
    QuerySetUpdate,
    ReducerOk,
    ReducerResult,
    ServerMessage,
    SingleTableRows,
    Subscribe,
    SubscribeApplied,
    SubscriptionError,
    TransactionUpdate,
    Unsubscribe,
    UnsubscribeApplied,
    UnsubscribeFlags,
    encode_reducer_ok_without_updates,
)
from autopilot_sync.spacetime.rowlist import BsatnRowList
from autopilot_sync.spacetime.v1_subprotocols import V1_BSATN_PROTOCOL
from autopilot_sync.spacetime.values import Identity

if TYPE_CHECKING:
    from autopilot_sync.host.session_v1 import V1Codec

log = logging.getLogger(__name__)


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
    #: Handshakes between the upgrade and `InitialConnection` at once; further upgrades wait before their 101.
    #: A client's handshake timer (the SDKs': 10 s) starts at the 101, and in a reconnect storm of 2,000 sockets
    #: upgraded at once the event loop shares itself among all of them, so the last `InitialConnection`s came
    #: after 10 s; waiting before the 101 instead keeps each admitted handshake short (docs/performance.md).
    max_pending_handshakes: int = 64
    #: What one connection may subscribe (query sets, queries).
    subscription_limits: SubscriptionLimits = field(default_factory=SubscriptionLimits)


@dataclass(frozen=True, slots=True)
class _ReducerOrigin:
    """`origin` of a reducer transaction called over a socket: tells the commit listener whom to answer."""

    connection: Connection
    request_id: int


class Connection:
    """One upgraded socket: the adapter around its `ServerSession` and the session's `SessionBackend`.

    It owns the I/O the session leaves out: the aiohttp socket, the writer task, the ping timer, the close handshake.
    After every input it gives the session, it looks at what the session asks for (`_poll`): frames to write start
    the writer, a close request starts the close, held answers put it on the hub's list of connections to release.

    An idle connection holds no task but the one serving it (reading): the writer exists only while frames wait and
    the pings are a timer, which is what keeps 10,000 idle sockets small (docs/performance.md, "Round 3").
    """

    def __init__(
        self,
        hub: WebSocketHub,
        ws: web.WebSocketResponse,
        request: web.Request,
        caller: Caller,
        version: int,
        compression: Compression,
        codec: V1Codec | None = None,
    ) -> None:
        self.hub = hub
        self.ws = ws
        self.request = request
        self.caller = caller
        options = hub.options
        self.session = ServerSession(
            self,
            version=version,
            compression=compression,
            identity=caller.identity,
            connection_id=caller.connection_id,
            bounds=SendBounds(options.send_queue_max_messages, options.send_queue_max_bytes),
            codec=codec,
        )
        self._writer: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._rights_end: float | None = None
        #: loop time of the last frame from the client (pongs too) and of the next ping
        self.last_heard = 0.0
        self._next_ping = 0.0
        #: loop time the timer is due at (its lateness is the host's, not the client's silence: `host/liveness.py`)
        self._due = 0.0
        #: calls started and not yet answered (the idle timer's "the host owes it answers")
        self.calls_in_flight = 0
        #: `bytes_acked` of the socket when the timer last saw output waiting (-1: not seen): does the output move?
        self._acked_seen = -1
        self._closing_task: asyncio.Task[None] | None = None
        self.private_visible = hub.engine.reads_everything(caller.identity)
        #: The offset whose durability releases this connection's oldest held answer, as the hub files it (`hold`).
        self.held_until: int | None = None

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    @property
    def version(self) -> int:
        """The negotiated protocol version (1, 2 or 3)."""
        return self.session.version

    @property
    def closed(self) -> bool:
        """Nothing more is sent: the session asked to close, or the socket is gone."""
        return self.session.closed

    @property
    def close_reason(self) -> CloseReason | None:
        """Why the host closed it; None: the client closed or vanished."""
        return self.session.close_reason

    # ----- the session's backend -----

    @property
    def offset(self) -> int:
        """The engine offset the next request sees."""
        return self.hub.engine.offset

    @property
    def durable_offset(self) -> int:
        """The newest durable engine offset."""
        return self.hub.engine.durable_offset

    def subscribe(self, message: Subscribe) -> SubscribeApplied | SubscriptionError:
        """Register a query set with the hub's subscription engine."""
        return self.hub.subscriptions.subscribe(
            self,
            message.request_id,
            message.query_set_id,
            message.query_strings,
            sender=self.caller.identity,
            private_visible=self.private_visible,
        )

    def unsubscribe(self, message: Unsubscribe) -> UnsubscribeApplied | SubscriptionError:
        """End a query set in the hub's subscription engine."""
        return self.hub.subscriptions.unsubscribe(
            self,
            message.request_id,
            message.query_set_id,
            send_dropped_rows=message.flags is UnsubscribeFlags.SEND_DROPPED_ROWS,
        )

    def one_off(self, message: OneOffQuery) -> OneOffQueryResult:
        """Run a one-off query as this connection's caller."""
        return _one_off(self, message)

    def call_reducer(self, message: CallReducer, on_done: Callable[[CallOutcome], None]) -> None:
        """Run the reducer through the engine's one call path (its checks, its durability wait)."""

        def done(outcome: CallOutcome) -> None:
            self.calls_in_flight -= 1
            on_done(outcome)
            self._poll()

        origin = _ReducerOrigin(self, message.request_id)
        self.calls_in_flight += 1
        self.hub.engine.start_call(message.reducer, message.args, self.caller, origin, done)

    def call_procedure(self, message: CallProcedure, on_done: Callable[[ProcedureOutcome], None]) -> None:
        """Run the procedure through the engine (its transactions commit and fan out like a reducer's)."""

        def done(outcome: ProcedureOutcome) -> None:
            self.calls_in_flight -= 1
            on_done(outcome)
            self._poll()

        self.calls_in_flight += 1
        self.hub.engine.start_procedure(message.procedure, message.args, self.caller, done)

    # ----- feeding the session -----

    def receive_binary(self, data: bytes) -> None:
        """A binary frame from the client."""
        self.session.receive_binary(data)
        self._poll()

    def receive_text(self, text: str = "") -> None:
        """A text frame from the client."""
        self.session.receive_text(text)
        self._poll()

    def send(self, message: ServerMessage) -> None:
        """Queue a message (encoded now, once); a client over the queue bound is disconnected."""
        self.session.send(message)
        self._after_send()

    def send_encoded(self, message: EncodedMessage) -> None:
        """Queue an encoded message, possibly shared with other connections; over the queue bound: disconnect.

        To a socket with nothing waiting (no writer, an empty buffer, nothing queued or held) the frame is written at
        once, without the queue: the fan-out to 1,000 subscribers does this per subscriber per commit, and the queue's
        round trip (bounds, `data_to_send`, framing the list) was a third of its Python cost per subscriber.
        """
        if self._writer is None:
            frame = self.session.alone_frame(message)
            transport = self.request.transport
            if (
                frame is not None
                and transport is not None
                and not self.ws.closed
                and not transport.is_closing()
                and not transport.get_write_buffer_size()
            ):
                transport.write(_binary_frame_header(len(frame)) + frame)
                return
        self.session.send_encoded(message)
        self._after_send()

    def _after_send(self) -> None:
        """The fan-out's cheap path: a plain send never holds, so only a close (queue over its bound) needs `_poll`."""
        if self.session.close_request is None:
            self._wake()
        else:
            self._poll()

    def send_at(self, offset: int, message: ServerMessage) -> None:
        """Send an answer once engine `offset` is durable, in order with this connection's other answers."""
        self.session.send_at(offset, message)
        self._poll()

    def release(self, durable: int) -> None:
        """Queue held answers whose offset is now durable (called by the hub after each durable transaction)."""
        self.session.release(durable)
        self._poll()

    def _poll(self) -> None:
        """Do what the session asks for: write, close, or wait for durability."""
        session = self.session
        if session.held_until != self.held_until:
            self.hub.hold(self, session.held_until)
        request = session.close_request
        if request is not None:
            if self._closing_task is None:
                self._closing_task = asyncio.get_running_loop().create_task(self.close(request.reason, request.text))
        elif session.wants_write:
            self._wake()

    # ----- I/O -----

    @property
    def writing(self) -> bool:
        """Whether a writer is running (frames wait to be written)."""
        return self._writer is not None

    def _wake(self) -> None:
        """Write the frames that wait: at once when nothing can overtake them or block (`_write_now`), else by a
        writer task, started when none is running (a running one picks new frames up itself)."""
        if self._writer is None and self.session.wants_write and not self._write_now():
            self._writer = asyncio.get_running_loop().create_task(self._write())

    def _write_now(self) -> bool:
        """Give the session's frames to the socket now; False when they must go through a writer task instead.

        Now: no writer is running, the socket's buffer is empty (no back-pressure to wait for) and nothing is
        closing; the frames go to the transport as binary WebSocket frames (the host never compresses at that layer:
        `compress=False`). That saves a task and one loop iteration per answer and per update (-5% host CPU per
        unbatched call, docs/performance.md). Text frames (v1 JSON) take the writer task, which waits for the socket
        to drain; once the kernel's buffer is full, later frames wait in the session's bounded queue for it.
        """
        transport = self.request.transport
        if (
            self.session.codec is not None
            or self.closed
            or self.ws.closed
            or transport is None
            or transport.is_closing()
            or transport.get_write_buffer_size()
        ):
            return False
        while frames := self.session.data_to_send():
            for frame in frames:
                # One write call, no copy of the frame to prepend its header (a catch-up's frame is megabytes).
                transport.writelines((_binary_frame_header(len(frame)), frame))
            if transport.get_write_buffer_size():
                break
        return True

    async def _write(self) -> None:
        """Write the session's frames until none wait, then end. A failed write (the peer vanished mid-send) drops
        the TCP connection, which ends the read loop."""
        try:
            while not self.closed:
                frames = self.session.data_to_send()
                if not frames:
                    return
                text = self.session.codec is not None and self.session.codec.text_frames
                for frame in frames:
                    if text:
                        await self.ws.send_str(frame.decode("utf-8"))
                    else:
                        await self.ws.send_bytes(frame)
        except Exception:
            transport = self.request.transport
            if transport is not None:
                transport.abort()
        finally:
            self._writer = None

    def start_timer(self, rights_end: float | None) -> None:
        """The connection's one timer: a ping every `ping_interval`, so idle-but-alive clients answer with a pong,
        the close with `idle timeout` when nothing (not even a pong) came for `idle_timeout`, and the close with 1008
        `token expired` at `rights_end`.

        `rights_end` is the origin token's expiry plus the leeway (wall-clock seconds; None: the host's own
        non-expiring anonymous tokens, whose sockets live as long as on SpacetimeDB). The short token from
        `/v1/identity/websocket-token` only admitted the upgrade; what a socket may do ends with the token it came
        from.
        """
        self._rights_end = rights_end
        loop = asyncio.get_running_loop()
        self.last_heard = loop.time()
        self._next_ping = self.last_heard + self.hub.options.ping_interval
        self._arm(loop)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        delay = min(self._next_ping, self.last_heard + self.hub.options.idle_timeout) - now
        if self._rights_end is not None:
            delay = min(delay, self._rights_end - time.time())
        delay = max(delay, 0.0)
        self._due = now + delay
        self._timer = loop.call_later(delay, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.closed:
            return
        if self._rights_end is not None and time.time() >= self._rights_end:
            log.info("closing the socket of %s: its token expired", self.caller.identity)
            self.close_soon(CloseReason.TOKEN_EXPIRED)
            return
        now = loop.time()
        idle_timeout = self.hub.options.idle_timeout
        self.last_heard = quiet_since(self.last_heard, now, now - self._due)
        debt = self._debt(now)  # a few syscalls, only while output waits or the window ran out
        if now - self.last_heard >= idle_timeout:
            if debt is None or not debt.owed:
                self.close_soon(CloseReason.IDLE_TIMEOUT)
                return
            self.last_heard = now  # the client waits on the host: its silence counts from when that ends
        if now >= self._next_ping:
            self._next_ping = now + self.hub.options.ping_interval
            task = loop.create_task(_ping_quietly(self.ws))
            self.hub.pings.add(task)
            task.add_done_callback(self.hub.pings.discard)
        self._arm(loop)

    def _debt(self, now: float) -> ConnectionDebt | None:
        """What the host owes this connection now; each tick that sees output waiting notes how much of it the peer
        has taken (`bytes_acked`), so the next one can tell output that moves from output stuck for a gone peer.
        None when the idle window has not run out and no output waits (nothing to look at)."""
        transport = self.request.transport
        session = self.session
        sending = (
            self._writer is not None
            or session.wants_write
            or (transport is not None and transport.get_write_buffer_size() > 0)
        )
        if not sending and now - self.last_heard < self.hub.options.idle_timeout:
            self._acked_seen = -1
            return None
        sock = transport.get_extra_info("socket") if transport is not None else None
        moves = False
        if sending:
            acked = bytes_acked(sock)
            moves = acked is not None and 0 <= self._acked_seen < acked
            self._acked_seen = acked if acked is not None else -1
        else:
            self._acked_seen = -1
        return ConnectionDebt(
            calls_in_flight=self.calls_in_flight,
            holding=session.holding,
            unread_bytes=unread_bytes(sock),
            sending_moves=moves,
        )

    async def stop_io(self) -> None:
        """The read loop ended: stop pinging and wait for (or cancel) the writer."""
        if self._timer is not None:
            self._timer.cancel()
        writer = self._writer
        if writer is not None:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    # ----- closing -----

    def close_soon(self, reason: CloseReason, text: str | None = None) -> None:
        """Start closing from synchronous code (token expiry, storage failure, shutdown); idempotent."""
        self.session.close(reason, text)
        self._poll()

    async def close(self, reason: CloseReason, text: str | None = None) -> None:
        """Send a close frame (waiting briefly for the client's), then drop the TCP connection whatever happened."""
        self.session.close(reason, text)
        request = self.session.close_request
        if request is not None:
            code, message = request.code, request.reason_bytes
        else:  # the socket was already gone: whatever we send, nobody reads it
            code, message = reason.code, close_text(text if text is not None else reason.text)
        clean = False
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=message), self.hub.options.close_timeout)
            clean = True
        except (TimeoutError, asyncio.CancelledError, ConnectionError, RuntimeError):
            pass
        finally:
            # A close that did not finish (a peer that reads nothing: aiohttp's own `transport.close()` then waits
            # for a buffer that never drains) drops the TCP connection, which also ends the read loop.
            transport = self.request.transport
            if transport is not None and not (clean and transport.is_closing()):
                transport.abort()

    def mark_gone(self) -> None:
        """The socket is finished: stop the writer and drop anything still queued or held."""
        self.session.gone()
        self.hub.hold(self, None)

    async def wait_closing(self) -> None:
        """Wait for a close the session asked for to finish."""
        if self._closing_task is not None:
            await asyncio.gather(self._closing_task, return_exceptions=True)


def _binary_frame_header(length: int) -> bytes:
    """The header of one final, unmasked, uncompressed binary frame of `length` bytes (RFC 6455 §5.2)."""
    if length < 126:
        return bytes((0x82, length))
    if length < 65536:
        return struct.pack("!BBH", 0x82, 126, length)
    return struct.pack("!BBQ", 0x82, 127, length)


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
    #: Connections holding answers for durability, by the offset their oldest held answer waits for (`hold`).
    holding: dict[int, set[Connection]] = field(default_factory=dict)
    #: Pings being written (a ping task lives for one write; the set keeps it referenced until then).
    pings: set[asyncio.Task[None]] = field(default_factory=set)
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
        #: Bounds the handshakes between the upgrade and `InitialConnection` (`max_pending_handshakes`).
        self.handshakes = asyncio.Semaphore(self.options.max_pending_handshakes)
        #: Commits applied but not yet durable, with their fan-out evaluated while their fsync runs.
        self.pending: UpdateQueue[_FanOut] = UpdateQueue(self._evaluate)
        self._evaluation_due = False
        self.subscriptions = SubscriptionManager(
            self.engine.datastore,
            lambda: self.engine.offset,
            lambda: self.pending.evaluated_offset,
            self.options.subscription_limits,
            self.pending.unevaluated_after,
        )
        self.engine.add_apply_listener(self.on_apply)
        self.engine.add_commit_listener(self.on_commit)
        self.engine.add_failure_listener(self.on_storage_failure)
        self.engine.add_module_listener(self.on_module_changed)
        self.engine.add_module_replaced_listener(self.on_module_replaced)
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

    def on_apply(self, txs: Sequence[CommittedTx]) -> None:
        """The engine's apply listener: views' differences now (they read this very state), and the transactions'
        fan-out evaluated at the end of this loop turn, after the flush that makes them durable has started.

        Nothing is sent here: the evaluation's result waits in `pending` for the commit's durability (`on_commit`).
        """
        self.subscriptions.on_apply(txs)
        self.pending.applied(txs)
        if not self._evaluation_due:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # applied outside a loop (a synchronous test): evaluated when durable
                return
            self._evaluation_due = True
            loop.call_soon(self._evaluate_pending)

    def _evaluate_pending(self) -> None:
        self._evaluation_due = False
        try:
            self.pending.evaluate_now()
        except Exception:  # `_evaluate` catches per transaction; this keeps the loop's callback quiet
            log.exception("subscription evaluation failed")

    def on_commit(self, tx: CommittedTx) -> None:
        """Fan one durable transaction out: updates (the caller's as its result), then answers held for it.

        Answers held at this offset were computed on the state after this transaction, so they follow its updates,
        exactly as on SpacetimeDB, where a request handled after a commit is answered after that commit's update.
        The updates were evaluated while the fsync ran (`on_apply`); only now, durable, do they reach a socket.
        """
        try:
            self._send_fan_out(tx, self.pending.take(tx))
        finally:
            holding = self.holding
            # Only connections whose oldest held answer is now durable: one holding an answer for a later offset
            # would release nothing (in a storm, hundreds of them were visited after every commit).
            for due in sorted(offset for offset in holding if offset <= tx.offset):
                for connection in list(holding.get(due, ())):
                    connection.release(tx.offset)

    def hold(self, connection: Connection, due: int | None) -> None:
        """File `connection` under the offset its oldest held answer waits for (None: it holds nothing now)."""
        holding = self.holding
        filed = connection.held_until
        if filed is not None:
            bucket = holding.get(filed)
            if bucket is not None:
                bucket.discard(connection)
                if not bucket:
                    del holding[filed]
        connection.held_until = due
        if due is not None:
            holding.setdefault(due, set()).add(connection)

    def _evaluate(self, tx: CommittedTx) -> _FanOut:
        """One transaction's fan-out, computed and encoded but not sent: pure with respect to every socket.

        The subscription engine's state moves on (join mirrors, leaving query sets), which no client can observe; the
        encoded messages (and their frames, per compression) are cached on shared objects nobody else holds yet.
        """
        try:
            updates = self.subscriptions.on_commit(tx)
        except Exception:
            log.exception("subscription evaluation failed on offset %d", tx.offset)
            updates = {}
        origin = tx.origin if isinstance(tx.origin, _ReducerOrigin) else None
        caller = origin.connection if origin is not None else None
        # Clients with equal updates hold the same tuple: encode each distinct one once (keyed by identity; every
        # tuple stays alive in `updates` until it is sent, so an id cannot be reused meanwhile).
        encoded: dict[int, EncodedMessage] = {}
        for client, query_sets in updates.items():
            if isinstance(client, Connection) and client is not caller and not client.closed:
                if client.session.codec is not None:
                    continue  # v1: its own message per connection, encoded as it is sent (session_v1.py)
                message = encoded.get(id(query_sets))
                if message is None:
                    message = encoded[id(query_sets)] = EncodedMessage.of(TransactionUpdate(query_sets))
                message.frame(client.session.compression)
        answer = None
        if caller is not None and origin is not None and caller not in updates and caller.session.codec is None:
            answer = EncodedMessage(encode_reducer_ok_without_updates(origin.request_id, tx.timestamp))
        return _FanOut(updates, encoded, answer)

    def _send_fan_out(self, tx: CommittedTx, fan_out: _FanOut) -> None:
        """Send a durable transaction's evaluated fan-out: each subscriber's update, then the caller's answer."""
        updates, encoded = fan_out.updates, fan_out.encoded
        origin = tx.origin if isinstance(tx.origin, _ReducerOrigin) else None
        caller = origin.connection if origin is not None and origin.connection in self.connections else None
        for client, query_sets in updates.items():
            if isinstance(client, Connection) and client is not caller:
                if client.closed:
                    continue
                if client.session.codec is not None:  # v1: its own message per connection (session_v1.py)
                    client.send(TransactionUpdate(query_sets))
                    continue
                message = encoded.get(id(query_sets))
                if message is None:  # closed when evaluated, open again: never, but encode rather than lose it
                    message = encoded[id(query_sets)] = EncodedMessage.of(TransactionUpdate(query_sets))
                client.send_encoded(message)
        if caller is not None and origin is not None:
            own: tuple[QuerySetUpdate, ...] = updates.get(caller, ())
            if not own and caller.session.codec is None:  # the usual answer: its bytes in one pack
                answer = fan_out.answer
                if answer is None:
                    answer = EncodedMessage(encode_reducer_ok_without_updates(origin.request_id, tx.timestamp))
                caller.send_encoded(answer)
            else:
                caller.send(ReducerResult(origin.request_id, tx.timestamp, ReducerOk(b"", TransactionUpdate(own))))

    def on_storage_failure(self, error: BaseException) -> None:
        """The commit log failed: answers held back for durability can never go out, so close every socket now.

        Updates evaluated for commits that will never be durable are dropped unsent."""
        del error
        self.pending.clear()
        closing = [c.close(CloseReason.STORAGE_FAILED) for c in list(self.connections)]
        if closing:
            task = asyncio.get_running_loop().create_task(_gather_quietly(closing))
            self._closing_tasks.add(task)
            task.add_done_callback(self._closing_tasks.discard)

    def on_module_changed(self) -> None:
        """A publish changed the schema: every query set was compiled against tables that are gone, so drop them all
        now (before the next commit is fanned out) and close every socket with 1012; clients reconnect and resubscribe,
        as after SpacetimeDB's `DisconnectAllUsers`."""
        connections = list(self.connections)
        for connection in connections:
            self.subscriptions.remove_client(connection)
        # Updates evaluated for them before this (commits not yet durable) go nowhere, as if evaluated now.
        self.pending.map_evaluated(_without_updates)
        closing = [c.close(CloseReason.MODULE_UPDATED) for c in connections]
        if closing:
            task = asyncio.get_running_loop().create_task(_gather_quietly(closing))
            self._closing_tasks.add(task)
            task.add_done_callback(self._closing_tasks.discard)

    def on_module_replaced(self) -> None:
        """A publish kept the schema: query sets stay, their views are the new module's; a query set reading a view the
        new module no longer serves alike ends with a `SubscriptionError`, after the updates it is still owed."""
        offset = self.engine.offset
        for client, error in self.subscriptions.on_module_replaced():
            if isinstance(client, Connection) and not client.closed:
                client.send_at(offset, error)

    async def close_all(self, app: web.Application) -> None:
        """The app's shutdown hook: close every socket so `client_disconnected` runs before the engine stops."""
        del app
        await asyncio.gather(
            *(c.close(CloseReason.SHUTTING_DOWN) for c in list(self.connections)), return_exceptions=True
        )


@dataclass(slots=True)
class _FanOut:
    """One transaction's fan-out as evaluated before it was durable: what `WebSocketHub._send_fan_out` sends."""

    #: each affected client's query-set updates (`SubscriptionManager.on_commit`)
    updates: dict[Any, tuple[QuerySetUpdate, ...]]
    #: each distinct update tuple's encoding, by the tuple's identity (v2/v3 subscribers other than the caller)
    encoded: dict[int, EncodedMessage]
    #: the caller's answer when it has no update of its own (a v2/v3 caller)
    answer: EncodedMessage | None


def _without_updates(tx: CommittedTx, fan_out: _FanOut) -> _FanOut:
    del tx
    return _FanOut({}, {}, fan_out.answer)


async def _gather_quietly(closing: list[Coroutine[Any, Any, None]]) -> None:
    await asyncio.gather(*closing, return_exceptions=True)


HUB_KEY = web.AppKey("autopilot_sync.host.websocket_hub", WebSocketHub)


# ----- the handshake (the request itself is read by `ws_handshake.py`) -----


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
    upgrade = read_upgrade(request, auth)
    connection_id, compression, protocol = upgrade.connection_id, upgrade.compression, upgrade.protocol
    ws = MaskEnforcingResponse(
        protocols=(protocol,), max_msg_size=hub.options.max_message_bytes, compress=False, autoping=False
    )
    if not ws.can_prepare(request).ok:
        raise bad_request("WebSocket upgrade expected: send Connection: Upgrade and Upgrade: websocket", auth)
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
    # The upgrade waits for a handshake slot; the slot is held until `InitialConnection` is written (or refused).
    handshake = hub.handshakes
    try:
        await handshake.acquire()
    except BaseException:
        hub.release_identity(caller.identity)
        raise
    try:
        await ws.prepare(request)
        await engine.connect(caller)
    except ConnectionRejectedError as exc:
        handshake.release()
        hub.release_identity(caller.identity)
        await _refuse(hub, ws, request, caller, exc)
        return ws
    except BaseException:
        handshake.release()
        hub.release_identity(caller.identity)
        raise
    version = upgrade.version
    codec = None
    try:
        if version == 1:
            # The v1 codec is imported by the first v1 connection (or the warm-up after `ready`), not at start.
            from autopilot_sync.host.session_v1 import EngineV1Schema, V1Codec
            from autopilot_sync.spacetime.messages_v1 import V1Format

            fmt = V1Format.BSATN if protocol == V1_BSATN_PROTOCOL else V1Format.JSON
            codec = V1Codec(fmt, EngineV1Schema(engine), caller.identity, connection_id)
        connection = Connection(hub, ws, request, caller, version, compression, codec)
    except BaseException:
        handshake.release()
        hub.release_identity(caller.identity)
        raise
    try:
        hub.connections.add(connection)
        hub.report(ConnectionEvent.OPENED)
        try:
            connection.send(InitialConnection(caller.identity, connection_id, auth.token.token))
        finally:
            handshake.release()
        rights_end = request.app[TOKENS_KEY].rights_end(auth.token)
        # A socket lives long: past this point it needs only the caller (its own copy of the claims), so the verified
        # token (its text, its claims) is not held once more per socket for as long as it stays open.
        del auth
        await _serve(connection, rights_end)
    finally:
        if connection in hub.connections:
            hub.report(ConnectionEvent.CLOSED, close_reason_label(connection.close_reason))
        connection.mark_gone()
        hub.connections.discard(connection)
        hub.hold(connection, None)
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
        await asyncio.wait_for(ws.close(code=reason.code, message=close_text(str(error))), hub.options.close_timeout)
    except (TimeoutError, ConnectionError, RuntimeError):
        pass
    finally:
        transport = request.transport
        if transport is not None and not transport.is_closing():
            transport.abort()


async def _ping_quietly(ws: web.WebSocketResponse) -> None:
    with contextlib.suppress(Exception):
        await ws.ping()


async def _serve(connection: Connection, rights_end: float | None) -> None:
    connection.start_timer(rights_end)
    try:
        await _read_loop(connection)
    finally:
        await connection.stop_io()
        await connection.wait_closing()
        if not connection.ws.closed:
            # The writer failed (the peer vanished mid-send): nobody is left to read a close frame.
            transport = connection.request.transport
            if transport is not None:
                transport.abort()


async def _read_loop(connection: Connection) -> None:
    """Feed the client's frames to the session until it asks to close or the client leaves (a writer that failed
    dropped the TCP connection, which ends the read too)."""
    ws = connection.ws
    loop = asyncio.get_running_loop()
    while not connection.closed:
        msg = await ws.receive()  # the idle timeout is the connection's timer (`last_heard`), not one per receive
        if msg.type is WSMsgType.BINARY:
            connection.receive_binary(msg.data)
        elif msg.type is WSMsgType.TEXT:
            connection.receive_text(msg.data)
        elif msg.type is WSMsgType.PING:  # what aiohttp's autoping does, which would hide the frame from `last_heard`
            with contextlib.suppress(Exception):  # the peer vanished: the next receive says so
                await ws.pong(msg.data)
        elif msg.type is not WSMsgType.PONG:  # CLOSE, CLOSING, CLOSED, ERROR (aiohttp answered protocol errors)
            return
        # Idle time counts from here, as a timeout on the next receive would: the host's own work on a frame is
        # not the client's silence.
        connection.last_heard = loop.time()
        if connection.writing:
            # `receive` returns without yielding while frames are buffered: let the writer send this answer before
            # the next request, so a client that pipelines requests is answered as it goes (and its queue drains).
            await asyncio.sleep(0)


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
