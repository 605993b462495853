"""The server side of one SpacetimeDB v2/v3 WebSocket connection as a pure state machine (sans-I/O).

In the style of h11 and `websockets`' protocol core: a `ServerSession` is fed what arrives (a binary frame, a text
frame, the outcome of a reducer call, a durable offset, a transaction's update for this client) and keeps what the
connection is owed and in what order; the adapter (`websocket.py`) pulls what to do next: the frames to write
(`data_to_send`) and whether to close, with which code and reason (`close_request`). It never touches a socket, a
task or a clock, so every ordering rule is tested by feeding it bytes (tests/host/test_server_session.py).

What it holds:
- the negotiated protocol (v2: one message per frame; v3: frames of several messages, decoded one at a time so the
  messages before an undecodable one still run; v1: a `SessionCodec` in front, `session_v1.py`, translating its
  messages to and from the v2 ones) and the compression of server frames;
- the query sets this connection holds (a second `Subscribe` with a held id closes the socket with 1011, as
  SpacetimeDB's `add_subscription_v2` error does);
- the send queue and the held answers, with their byte accounting: every answer goes through `send_at` with the
  engine offset it observed and waits, in the order the client asked, until that offset is durable (`release`), so
  a client sees the updates up to the state an answer was computed on, then the answer. Held answers count toward the
  queue bounds from the moment they are held; a client over a bound is closed with 1008 (`SEND_QUEUE_FULL`).

The database work itself (subscribing, running a query, calling a reducer) is done by the `SessionBackend` the
adapter passes in, synchronously and in the order the messages arrive: a reducer call's transaction runs before the
next message is handled, so that message sees its effects.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from autopilot_sync.host.call_outcome import CallOutcome, CallStatus
from autopilot_sync.host.procedure_call import ProcedureOutcome
from autopilot_sync.spacetime.errors import DecodeError
from autopilot_sync.spacetime.frames import Compression, EncodedMessage, frame_messages
from autopilot_sync.spacetime.messages import (
    CallProcedure,
    CallReducer,
    ClientMessage,
    OneOffQuery,
    OneOffQueryResult,
    ProcedureInternalError,
    ProcedureResult,
    ProcedureReturned,
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
    decode_client_message,
    decode_client_message_prefix,
)
from autopilot_sync.spacetime.values import ConnectionId, Identity, TimeDuration

log = logging.getLogger(__name__)

#: The close reason of an empty v3 binary frame (SpacetimeDB's text).
EMPTY_V3_FRAME = "v3 websocket binary payload must contain at least one v2 client message"

#: Longest close reason in bytes of UTF-8 (RFC 6455 §5.5: a control frame's payload is at most 125 bytes).
MAX_CLOSE_REASON_BYTES = 123


class CloseReason(enum.Enum):
    """Every way the host closes a socket: (close code, reason text). docs/protocol.md has the same table."""

    DECODE_ERROR = (1011, "")  # reason: the decode error's text
    TEXT_FRAME_V2 = (1011, "v2 websocket does not support text messages")
    TEXT_FRAME_V3 = (1011, "v3 websocket does not support text messages")
    SEND_QUEUE_FULL = (1008, "send queue full: client too slow")
    IDLE_TIMEOUT = (1001, "idle timeout: nothing received from the client")
    SHUTTING_DOWN = (1001, "host shutting down")
    MODULE_UPDATED = (1012, "module updated: reconnect")
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


def close_text(text: str) -> bytes:
    """A close reason fits in 123 bytes of UTF-8 (RFC 6455 §5.5); cut at a character boundary."""
    raw = text.encode("utf-8")
    if len(raw) <= MAX_CLOSE_REASON_BYTES:
        return raw
    return raw[:120].decode("utf-8", "ignore").encode("utf-8") + b"..."


@dataclass(frozen=True, slots=True)
class Close:
    """What the adapter must do to end the connection: send a close frame with `code` and `reason`, then drop it."""

    reason: CloseReason
    text: str

    @property
    def code(self) -> int:
        """The WebSocket close code."""
        return self.reason.code

    @property
    def reason_bytes(self) -> bytes:
        """The close reason as sent: UTF-8, cut to 123 bytes."""
        return close_text(self.text)


@dataclass(frozen=True, slots=True)
class SendBounds:
    """How much one client may have queued or held before it counts as too slow (`WebSocketOptions` sets them)."""

    max_messages: int = 16_384
    max_bytes: int = 256 * 1024 * 1024


class SessionBackend(Protocol):
    """The database a session serves, seen from one connection (the adapter implements it over the engine).

    Every method runs synchronously when the message arrives; `call_reducer` runs the transaction at once and hands
    its outcome to `on_done` later (once durable) or at once (a call that wrote nothing, or was refused).
    """

    @property
    def offset(self) -> int:
        """The engine offset of the state the next request will see."""
        ...

    @property
    def durable_offset(self) -> int:
        """The newest offset that is on disk (its transaction's updates already handed to the connection)."""
        ...

    def subscribe(self, message: Subscribe) -> SubscribeApplied | SubscriptionError:
        """Register a query set (or refuse it, registering nothing) and return the answer."""
        ...

    def unsubscribe(self, message: Unsubscribe) -> UnsubscribeApplied | SubscriptionError:
        """End a query set and return the answer (with the dropped rows when asked)."""
        ...

    def one_off(self, message: OneOffQuery) -> OneOffQueryResult:
        """Run a one-off query on the current state."""
        ...

    def call_reducer(self, message: CallReducer, on_done: Callable[[CallOutcome], None]) -> None:
        """Run the reducer now; `on_done` gets the outcome (a committed write's result is sent by the fan-out)."""
        ...

    def call_procedure(self, message: CallProcedure, on_done: Callable[[ProcedureOutcome], None]) -> None:
        """Run the procedure now; `on_done` gets its outcome once every commit it saw or made is durable."""
        ...


class SessionCodec(Protocol):
    """A wire format in front of the session (the v1 subprotocols, `session_v1.py`): it turns client frames into
    the session's requests and the session's messages into its own; the session's rules stay the same."""

    @property
    def text_frames(self) -> bool:
        """Whether server messages go out as text frames (their bodies as they are) instead of tagged binary."""
        ...

    def receive(self, session: ServerSession, data: bytes | str) -> None:
        """Handle one client frame (binary: bytes, text: str) by feeding the session its requests."""
        ...

    def encode(self, message: ServerMessage) -> EncodedMessage | None:
        """The body to send for a session message (None: this protocol sends nothing for it)."""
        ...


class ServerSession:
    """One connection's protocol state: what it subscribed, what it is owed, and in what order (module docstring)."""

    def __init__(
        self,
        backend: SessionBackend,
        *,
        version: int,
        compression: Compression,
        identity: Identity,
        connection_id: ConnectionId | None,
        bounds: SendBounds | None = None,
        codec: SessionCodec | None = None,
    ) -> None:
        if version not in (2, 3) and not (version == 1 and codec is not None):
            raise ValueError(f"protocol version must be 2 or 3 (or 1 with its codec), got {version}")
        self.backend = backend
        #: The v1 codec (None: the session speaks v2/v3 itself).
        self.codec = codec
        self.version = version
        self.compression = compression
        self.identity = identity
        self.connection_id = connection_id
        self.bounds = bounds or SendBounds()
        #: The query set ids this connection holds (applied and not yet unsubscribed).
        self.query_sets: set[int] = set()
        # Lists, not deques: an empty deque allocates a 64-slot block, and most of 10,000 idle sessions queue nothing.
        self._queue: list[EncodedMessage] = []
        self._queued_bytes = 0
        self._held: list[tuple[int, EncodedMessage]] = []
        self._held_bytes = 0
        #: Set once, when the session decides the connection ends (or the adapter tells it to).
        self.close_request: Close | None = None
        #: Why the host closed it; None: the client closed or vanished.
        self.close_reason: CloseReason | None = None
        self._gone = False

    # ----- state the adapter reads -----

    @property
    def closed(self) -> bool:
        """Nothing more is sent or handled: a close was requested or the socket is gone."""
        return self.close_request is not None or self._gone

    @property
    def wants_write(self) -> bool:
        """Whether `data_to_send` has something."""
        return bool(self._queue) and not self.closed

    @property
    def holding(self) -> bool:
        """Whether answers wait for durability (the adapter then calls `release` after each durable commit)."""
        return bool(self._held)

    @property
    def held_until(self) -> int | None:
        """The offset the oldest held answer waits for (None: nothing held): `release` frees nothing before it is
        durable, so the adapter need not call it until then."""
        held = self._held
        return held[0][0] if held else None

    @property
    def queued(self) -> tuple[int, int]:
        """(messages, bytes) queued or held: what counts toward the send bounds."""
        return len(self._queue) + len(self._held), self._queued_bytes + self._held_bytes

    # ----- input: the client -----

    def receive_binary(self, data: bytes) -> None:
        """Handle each message of a binary frame in order; a message that does not decode closes with 1011.

        v3 frames are decoded one message at a time, as the real host does: messages before an undecodable one run.
        """
        if self.closed:
            return
        if self.codec is not None:
            self.codec.receive(self, data)
            return
        if self.version == 2:
            try:
                message = decode_client_message(data)
            except DecodeError as exc:
                self.close(CloseReason.DECODE_ERROR, str(exc))
                return
            self.receive_message(message)
            return
        if not data:
            self.close(CloseReason.DECODE_ERROR, EMPTY_V3_FRAME)
            return
        offset = 0
        while offset < len(data) and not self.closed:
            try:
                message, offset = decode_client_message_prefix(data, offset)
            except DecodeError as exc:
                self.close(CloseReason.DECODE_ERROR, str(exc))
                return
            self.receive_message(message)

    def receive_text(self, text: str = "") -> None:
        """A text frame: v1 reads it as JSON; v2/v3 have none, so the socket closes with 1011 (SpacetimeDB's text)."""
        if self.closed:
            return
        if self.codec is not None:
            self.codec.receive(self, text)
            return
        self.close(CloseReason.TEXT_FRAME_V3 if self.version == 3 else CloseReason.TEXT_FRAME_V2)

    def receive_message(self, message: ClientMessage) -> None:
        """Handle one decoded client message; its answer is queued or held in request order."""
        if self.closed:
            return
        backend = self.backend
        if isinstance(message, CallReducer):
            request_id = message.request_id
            backend.call_reducer(message, lambda outcome: self.reducer_finished(request_id, outcome))
        elif isinstance(message, Subscribe):
            if message.query_set_id in self.query_sets:
                self._query_set_in_use(message.query_set_id)
                return
            applied = backend.subscribe(message)
            if isinstance(applied, SubscribeApplied):
                self.query_sets.add(message.query_set_id)
                self.send_at(backend.offset, applied)
            else:
                self.send_at(0, applied)
        elif isinstance(message, Unsubscribe):
            unsubscribed = backend.unsubscribe(message)
            if isinstance(unsubscribed, UnsubscribeApplied):
                self.query_sets.discard(message.query_set_id)
                self.send_at(backend.offset, unsubscribed)
            else:
                self.send_at(0, unsubscribed)
        elif isinstance(message, OneOffQuery):
            self.send_at(backend.offset, backend.one_off(message))
        elif isinstance(message, CallProcedure):
            request_id = message.request_id
            backend.call_procedure(message, lambda outcome: self.procedure_finished(request_id, outcome))

    def _query_set_in_use(self, query_set_id: int) -> None:
        # SpacetimeDB: `add_subscription_v2` (crates/core/src/subscription/module_subscription_manager.rs) errors,
        # and crates/client-api/src/routes/subscribe.rs closes the socket with CloseCode::Error (1011).
        text = CloseReason.QUERY_SET_IN_USE.text.replace("{ id: N }", f"{{ id: {query_set_id} }}").replace(
            "CLIENT", f"(Identity({self.identity}), ConnectionId({self.connection_id}))"
        )
        self.close(CloseReason.QUERY_SET_IN_USE, text)

    # ----- input: the engine -----

    def reducer_finished(self, request_id: int, outcome: CallOutcome) -> None:
        """A reducer call this connection made ended; answer it unless the commit's fan-out already did.

        A call that wrote nothing (a duplicate, an error) still reveals the state it saw: held until durable. A call
        that wrote is answered by the fan-out of its transaction (`transaction_result`), in commit order.
        """
        status = outcome.status
        if status is CallStatus.COMMITTED:
            if outcome.tx is None or not outcome.tx.changes:
                ok = ReducerOk(b"", TransactionUpdate(()))
                self.send_at(outcome.offset, ReducerResult(request_id, outcome.timestamp, ok))
            return
        if status is CallStatus.USER_ERROR:
            error = ReducerErr(_bsatn_string(outcome.message))
            self.send_at(outcome.offset, ReducerResult(request_id, outcome.timestamp, error))
            return
        # crates/core/src/host/module_host.rs `ReducerCallError::NoSuchReducer` carries no name.
        text = "no such reducer" if status is CallStatus.NO_SUCH_REDUCER else outcome.message
        self.send_at(outcome.offset, ReducerResult(request_id, outcome.timestamp, ReducerInternalError(text)))

    def procedure_finished(self, request_id: int, outcome: ProcedureOutcome) -> None:
        """A procedure call ended: its value or error, after the updates of every transaction it committed."""
        status: ProcedureReturned | ProcedureInternalError
        if outcome.returned is not None:
            status = ProcedureReturned(outcome.returned)
        else:
            status = ProcedureInternalError(outcome.error)
        duration = TimeDuration(outcome.duration_micros)
        self.send_at(outcome.offset, ProcedureResult(status, outcome.timestamp, duration, request_id))

    def release(self, durable: int) -> None:
        """Queue the held answers whose offset is now durable, oldest first (after each durable transaction)."""
        held = self._held
        released = 0
        while released < len(held) and held[released][0] <= durable:
            _, body = held[released]
            released += 1
            self._held_bytes -= len(body.body)
            if not self.closed:  # already counted against the bounds while held
                self._queue.append(body)
                self._queued_bytes += len(body.body)
        del held[:released]

    # ----- output -----

    def send(self, message: ServerMessage | EncodedMessage) -> None:
        """Queue a message that depends on no state (or whose state is durable by construction: an update)."""
        if self.closed:
            return
        encoded = self._encode(message)
        if encoded is not None:
            self.send_encoded(encoded)

    def _encode(self, message: ServerMessage | EncodedMessage) -> EncodedMessage | None:
        """The body of a message on this connection's protocol (None: the codec sends nothing for it)."""
        if isinstance(message, EncodedMessage):
            return message
        if self.codec is not None:
            return self.codec.encode(message)
        return EncodedMessage.of(message)

    def send_encoded(self, message: EncodedMessage) -> None:
        """Queue an encoded message, possibly shared with other connections; over the queue bounds: close 1008."""
        if self.closed or not self._room_for(len(message.body)):
            return
        self._queue.append(message)
        self._queued_bytes += len(message.body)

    def alone_frame(self, message: EncodedMessage) -> bytes | None:
        """The frame of `message` when it may skip the queue: nothing queued or held, not closing, a binary protocol
        and within the bounds; None: it must go through `send_encoded`.

        The fan-out's fast path: to a socket with nothing waiting, a shared update is written straight away (the
        adapter checks the socket is writable), which is what queueing it and draining the queue at once would do.
        """
        if self._queue or self._held or self.closed or self.codec is not None:
            return None
        if self.bounds.max_messages < 1 or len(message.body) > self.bounds.max_bytes:
            return None
        return message.frame(self.compression)

    def send_at(self, offset: int, message: ServerMessage | EncodedMessage) -> None:
        """Send an answer that reveals or depends on the state at engine `offset` once `offset` is durable.

        The one rule for answers: it leaves after every earlier answer of this connection and after the updates of
        every transaction up to `offset`. `offset` 0: depends on no state, only on order.
        """
        if self.closed:
            return
        if offset <= self.backend.durable_offset and not self._held:
            self.send(message)
            return
        encoded = self._encode(message)
        if encoded is None or not self._room_for(len(encoded.body)):
            return
        self._held.append((offset, encoded))
        self._held_bytes += len(encoded.body)

    def _room_for(self, size: int) -> bool:
        """Whether one more message of `size` bytes fits the bounds (queued and held alike); if not, close.

        Held answers count from the moment they are held: a client that piles up answers behind a slow fsync is
        as slow as one that does not read, and must not grow the host's memory past the bound meanwhile.
        """
        messages, size_total = self.queued
        if messages < self.bounds.max_messages and size_total + size <= self.bounds.max_bytes:
            return True
        log.warning("disconnecting %s: %d messages (%d bytes) queued or held", self.identity, messages, size_total)
        self.close(CloseReason.SEND_QUEUE_FULL)
        return False

    def data_to_send(self) -> list[bytes]:
        """Everything queued, as frames to write in order (v3: coalesced, v2: one message per frame)."""
        if not self._queue or self.closed:
            return []
        messages = list(self._queue)
        self._queue.clear()
        self._queued_bytes = 0
        if self.codec is not None and self.codec.text_frames:
            return [message.body for message in messages]
        return frame_messages(messages, self.compression, coalesce=self.version == 3)

    # ----- ending -----

    def close(self, reason: CloseReason, text: str | None = None) -> None:
        """Decide the connection ends (idempotent): drop what is queued or held, ask the adapter to close."""
        if self.close_reason is None:
            self.close_reason = reason
        if self.closed:
            return
        self.close_request = Close(reason, text if text is not None else reason.text)
        self._drop_all()

    def gone(self) -> None:
        """The socket is finished (either side closed it or it vanished): drop anything still queued or held."""
        self._gone = True
        self._drop_all()

    def _drop_all(self) -> None:
        self._queue.clear()
        self._queued_bytes = 0
        self._held.clear()
        self._held_bytes = 0


def _bsatn_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return len(raw).to_bytes(4, "little") + raw
