"""The client side of one SpacetimeDB v2/v3 session as a pure state machine (sans-I/O).

`connection.py` owns the socket, the tasks and the futures callers await; this module owns what the protocol
requires of a client, with no socket, task or future, so it is tested by feeding it messages
(tests/client/test_client_session.py):
- request ids (u32, wrapping) and query set ids, and which requests are still owed an answer;
- each query set's phase (pending → applied → unsubscribing) and which messages are allowed in it: an update for a set
  not applied, an answer for a request never sent, a second `InitialConnection` are `ProtocolError`s, raised before
  the message changes anything;
- applying server messages to the cache strictly in wire order, each one fully checked and decoded first;
- v3 batching: messages queued before a flush share frames of at most `V3_CLIENT_FRAME_CAP` bytes (v2: one message
  per frame), in the order they were queued.

`handle` returns what the adapter must tell an awaiting caller (`CallAnswered`, `QueryAnswered`, `UnsubscribeDone`);
query set handles (`QuerySet`) are updated here directly, as their state is the session's.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from autopilot_sync.client.cache import ChangeCause, ClientCache, RowBatch, RowOp
from autopilot_sync.client.errors import OneOffQueryError, ProtocolError, ProtocolErrorKind
from autopilot_sync.client.query_set import QuerySet, QuerySetOwner, QuerySetState
from autopilot_sync.client.results import (
    ProcedureCallResult,
    ProcedureFailed,
    ProcedureReturned,
    QueryResult,
    QueryTable,
    ReducerCallResult,
    ReducerCommitted,
    ReducerFailed,
    ReducerInternalError,
)
from autopilot_sync.client.schema import ClientSchema
from autopilot_sync.client.updates import live_ops, one_row_ops, ops_from_query_rows, ops_from_transaction
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime import messages as m
from autopilot_sync.spacetime.errors import DecodeError
from autopilot_sync.spacetime.frames import (
    MAX_MESSAGE_SIZE,
    V3_CLIENT_FRAME_CAP,
    batch_bodies,
    decode_server_frame_messages,
)
from autopilot_sync.spacetime.rowlist import decode_row_list
from autopilot_sync.spacetime.values import Timestamp

PROTOCOL_V3 = "v3.bsatn.spacetimedb"
PROTOCOL_V2 = "v2.bsatn.spacetimedb"
_U32_MASK = 0xFFFFFFFF
_ERR_TEXT = bsatn.codec(at.STRING)
#: After an uncompressed frame's tag and a `TransactionUpdate`'s tag: query set count, its id, its table count, and the
#: table name's length.
_LIVE_UPDATE_HEAD = struct.Struct("<IIII")
_U32 = struct.Struct("<I")
#: After an uncompressed frame's tag and a `ReducerResult`'s: request id, timestamp, outcome tag, `ret_value` length.
_ANSWER_HEAD = struct.Struct("<IqBI")
_NO_QUERY_SETS = bytes(4)
#: How many reducer names' encodings a session keeps (a module has a handful of reducers).
_CALL_NAMES_KEPT = 256
#: One row's row list is `FixedSize(n)` over n bytes (as the host writes it) or `RowOffsets` holding the offset 0 (a
#: row too long for a u16), each followed by the rows' length; an empty one is `RowOffsets` of none over no bytes.
#: A live update's inserts and deletes.
_FIXED_SIZE_ROWS = struct.Struct("<HI")
_ONE_ROW_OFFSETS = b"\x01\x01\x00\x00\x00" + bytes(8)
_NO_ROWS = b"\x01" + bytes(8)


class Phase(enum.Enum):
    """Where a query set is on this session."""

    PENDING = "pending"
    APPLIED = "applied"
    UNSUBSCRIBING = "unsubscribing"


@dataclass(slots=True)
class _Tracked:
    query_set: QuerySet
    phase: Phase
    request_id: int


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """The reducer call `request_id` has its result."""

    request_id: int
    result: ReducerCallResult


@dataclass(frozen=True, slots=True)
class QueryAnswered:
    """The one-off query `request_id` has its rows, or the server's refusal."""

    request_id: int
    result: QueryResult | OneOffQueryError


@dataclass(frozen=True, slots=True)
class UnsubscribeDone:
    """The unsubscribe `request_id` is confirmed (or its set was dropped by the server meanwhile)."""

    request_id: int


@dataclass(frozen=True, slots=True)
class ProcedureAnswered:
    """The procedure call `request_id` has its result."""

    request_id: int
    result: ProcedureCallResult


#: What `ClientSession.handle` tells the adapter (None: nothing for a waiting caller).
Answer = CallAnswered | QueryAnswered | UnsubscribeDone | ProcedureAnswered


def decode_frame(data: bytes, protocol: str, max_size: int = MAX_MESSAGE_SIZE) -> list[m.ServerMessage]:
    """Every server message in one binary frame; `ProtocolError` for anything undecodable (v2: exactly one)."""
    try:
        messages = decode_server_frame_messages(data, max_size)
    except DecodeError as exc:
        raise ProtocolError(ProtocolErrorKind.UNDECODABLE_FRAME, str(exc)) from None
    if protocol == PROTOCOL_V2 and len(messages) != 1:
        raise ProtocolError(ProtocolErrorKind.UNDECODABLE_FRAME, f"v2 frame holds {len(messages)} messages")
    return messages


class ClientSession:
    """One session's protocol state: ids, what is owed, query set phases, the outgoing queue (module docstring)."""

    def __init__(
        self, schema: ClientSchema, cache: ClientCache, protocol: str, max_message_bytes: int = MAX_MESSAGE_SIZE
    ) -> None:
        self.schema = schema
        self.cache = cache
        self.protocol = protocol
        #: whether queued messages share frames (v3) rather than each taking one (v2)
        self.coalesces = protocol == PROTOCOL_V3
        self.max_message_bytes = max_message_bytes
        self._next_request = 0
        self._next_query_set = 0
        self._query_sets: dict[int, _Tracked] = {}
        self._calls: dict[int, str] = {}  # request id → reducer name
        self._procedure_calls: dict[int, str] = {}  # request id → procedure name
        self._one_offs: set[int] = set()
        self._unsubscribes: set[int] = set()
        self._outbox: list[bytes] = []
        self._call_names: dict[str, bytes] = {}  # reducer name → its length-prefixed UTF-8, as a call carries it

    # ----- requests -----

    def _request_id(self) -> int:
        self._next_request = (self._next_request + 1) & _U32_MASK
        return self._next_request

    def subscribe(
        self, queries: Sequence[str], owner: QuerySetOwner, query_set: QuerySet | None = None
    ) -> tuple[QuerySet, m.Subscribe]:
        """A new query set (or a managed one re-attached), now pending, and the message that subscribes it."""
        if query_set is None:
            self._next_query_set = (self._next_query_set + 1) & _U32_MASK
            query_set = QuerySet(self._next_query_set, queries, owner)
        else:
            query_set.mark_pending(queries)
            self._next_query_set = max(self._next_query_set, query_set.id)
        if query_set.id in self._query_sets:
            raise ValueError(f"query set {query_set.id} is already live on this connection")
        request_id = self._request_id()
        self._query_sets[query_set.id] = _Tracked(query_set, Phase.PENDING, request_id)
        return query_set, m.Subscribe(request_id, query_set.id, tuple(query_set.queries))

    def subscribe_not_sent(self, query_set: QuerySet) -> None:
        """The Subscribe never left (the connection closed first): forget the set and end it."""
        self._query_sets.pop(query_set.id, None)
        query_set.connection_lost("connection closed before the subscription was sent")

    def unsubscribe(self, query_set: QuerySet) -> m.Unsubscribe | int | None:
        """Start ending `query_set`: the message to send, the id of an unsubscribe already under way, or None.

        None: the set is not live here (it is marked ended unless it already ended or failed).
        """
        tracked = self._query_sets.get(query_set.id)
        if tracked is None or tracked.query_set is not query_set:
            if query_set.state not in (QuerySetState.ENDED, QuerySetState.ERROR):
                query_set.mark_ended("unsubscribed")
            return None
        if tracked.phase is Phase.UNSUBSCRIBING:
            return tracked.request_id
        request_id = self._request_id()
        tracked.phase = Phase.UNSUBSCRIBING
        tracked.request_id = request_id
        self._unsubscribes.add(request_id)
        return m.Unsubscribe(request_id, query_set.id, m.UnsubscribeFlags.DEFAULT)

    def call(self, reducer: str, args: bytes) -> m.CallReducer:
        """A reducer call, now owed a `ReducerResult`."""
        request_id = self._request_id()
        self._calls[request_id] = reducer
        return m.CallReducer(request_id, m.CallReducerFlags.DEFAULT, reducer, args)

    def queue_call(self, reducer: str, args: bytes) -> int:
        """A reducer call, now owed a `ReducerResult` and queued: `call` + `queue` without building the `CallReducer`
        first (its bytes written directly, the reducer name's part kept per name); returns its request id."""
        header = self._call_names.get(reducer)
        if header is None:
            name = reducer.encode("utf-8")
            header = _U32.pack(len(name)) + name
            if len(self._call_names) < _CALL_NAMES_KEPT:  # `call_raw` takes any name: keep a bounded few
                self._call_names[reducer] = header
        try:
            size = _U32.pack(len(args))
        except struct.error as exc:
            raise ValueError(f"CallReducer does not fit its wire types: {exc}") from None
        request_id = self._request_id()
        self._calls[request_id] = reducer
        self._outbox.append(b"\x03" + _U32.pack(request_id) + b"\x00" + header + size + args)
        return request_id

    def call_procedure(self, procedure: str, args: bytes) -> m.CallProcedure:
        """A procedure call, now owed a `ProcedureResult`."""
        request_id = self._request_id()
        self._procedure_calls[request_id] = procedure
        return m.CallProcedure(request_id, m.CallProcedureFlags.DEFAULT, procedure, args)

    def one_off(self, sql: str) -> m.OneOffQuery:
        """A one-off query, now owed a `OneOffQueryResult`."""
        request_id = self._request_id()
        self._one_offs.add(request_id)
        return m.OneOffQuery(request_id, sql)

    def not_sent(self, request_id: int) -> None:
        """A call or query whose message never left: it is owed nothing."""
        self._calls.pop(request_id, None)
        self._procedure_calls.pop(request_id, None)
        self._one_offs.discard(request_id)

    def query_sets(self) -> list[QuerySet]:
        """Query sets live on this session."""
        return [t.query_set for t in self._query_sets.values()]

    # ----- outgoing frames -----

    def queue(self, message: m.ClientMessage) -> None:
        """Queue one message for the next `frames_to_send`."""
        self._outbox.append(m.encode_client_message(message))

    def frames_to_send(self) -> list[bytes]:
        """Everything queued, as frames in order: v3 packs messages into frames of at most the cap, v2 one each."""
        bodies, self._outbox = self._outbox, []
        if not self.coalesces or len(bodies) == 1:  # v2, or one message: its own frame (a lone call's, every time)
            return bodies
        return [b"".join(batch) for batch in batch_bodies(bodies, V3_CLIENT_FRAME_CAP)]

    # ----- incoming -----

    def decode(self, data: bytes) -> list[m.ServerMessage]:
        """The messages of one binary frame, in wire order (`ProtocolError` when it does not decode)."""
        return decode_frame(data, self.protocol, self.max_message_bytes)

    def apply_live_update(self, data: bytes) -> bool:
        """Apply a frame that holds just one `TransactionUpdate` of one table in one query set, read from its bytes.

        That is every live update of one event: decoding it as messages built five dataclasses and two row lists to
        be taken apart again at once (a third of the SDK's time per received update, docs/performance.md "Round 7 —
        sdkside"). False, with nothing changed, for any other frame or anything odd about this one (a query set not
        applied, a table the schema lacks, bytes that do not parse): `decode` and `handle` then read it and raise
        exactly their errors. Once the frame is known good, the rows are checked and applied by the same functions
        as `handle` uses, so a bad row is the same `ProtocolError` with the cache untouched.
        """
        if data[:2] != b"\x00\x04" or len(data) - 1 > self.max_message_bytes:  # uncompressed; TransactionUpdate
            return False
        try:
            sets, query_set_id, tables, size = _LIVE_UPDATE_HEAD.unpack_from(data, 2)
            if sets != 1 or tables != 1:
                return False
            name = data[18 : 18 + size].decode("utf-8")
            (entries,) = _U32.unpack_from(data, 18 + size)
            pos = 22 + size
            if entries != 1 or data[pos] != 0:  # one `PersistentTableRows`
                return False
            pos += 1
            one_row: bytes | None = None
            if data[-9:] == _NO_ROWS:  # no delete: is it one insert?
                if data[pos] == 0:  # `FixedSize(n)` over n bytes
                    step, row_size = _FIXED_SIZE_ROWS.unpack_from(data, pos + 1)
                    start = pos + 7 if step == row_size else -1
                elif data[pos : pos + 13] == _ONE_ROW_OFFSETS:
                    (row_size,) = _U32.unpack_from(data, pos + 13)
                    start = pos + 17
                else:
                    start = row_size = -1
                if row_size > 0 and start > 0 and start + row_size + 9 == len(data):
                    one_row = data[start : start + row_size]
            if one_row is None:
                inserts, pos = decode_row_list(data, pos)
                deletes, pos = decode_row_list(data, pos)
                if pos != len(data):
                    return False
        except (struct.error, IndexError, UnicodeDecodeError, DecodeError):
            return False
        tracked = self._query_sets.get(query_set_id)
        table = self.schema.tables.get(name)
        if tracked is None or tracked.phase is Phase.PENDING or table is None:
            return False
        if one_row is not None:
            self.cache.apply(one_row_ops(table, query_set_id, one_row), ChangeCause.TRANSACTION)
            return True
        ops = live_ops(table, query_set_id, deletes, False)
        ops += live_ops(table, query_set_id, inserts, True)
        self.cache.apply(ops, ChangeCause.TRANSACTION)
        return True

    def answer_from_frame(self, data: bytes) -> CallAnswered | None:
        """The answer of a frame that holds just one `ReducerResult` committed with no rows for this connection.

        That is every call's answer when the caller follows nothing the call changed (a producer's): read from the
        bytes, not built as four dataclasses first. None, with nothing changed, for any other frame or anything odd
        about this one (a request not owed): `decode` and `handle` then read it and raise exactly their errors. As
        `handle`, the cache is told (`apply` of no operations: `on_batch` fires as before).
        """
        if data[:2] != b"\x00\x06" or len(data) - 1 > self.max_message_bytes:  # uncompressed; ReducerResult
            return None
        try:
            request_id, micros, outcome, size = _ANSWER_HEAD.unpack_from(data, 2)
        except struct.error:
            return None
        if outcome != 0 or len(data) != 23 + size or data[19 + size :] != _NO_QUERY_SETS:  # `ReducerOk`, no sets
            return None
        reducer = self._calls.pop(request_id, None)
        if reducer is None:
            return None
        changes = tuple(self.cache.apply((), ChangeCause.REDUCER_RESULT))
        return CallAnswered(request_id, ReducerCommitted(reducer, Timestamp(micros), changes, data[19 : 19 + size]))

    def handle(self, message: m.ServerMessage) -> Answer | None:
        """Apply one decoded server message; raises `ProtocolError` (before any change) when it is not allowed."""
        if isinstance(message, m.TransactionUpdate):
            self._check_query_sets(message)
            self.cache.apply(ops_from_transaction(self.schema, message), ChangeCause.TRANSACTION)
            return None
        if isinstance(message, m.ReducerResult):
            return self._on_reducer_result(message)
        if isinstance(message, m.ProcedureResult):
            return self._on_procedure_result(message)
        if isinstance(message, m.SubscribeApplied):
            self._on_subscribe_applied(message)
            return None
        if isinstance(message, m.UnsubscribeApplied):
            return self._on_unsubscribe_applied(message)
        if isinstance(message, m.SubscriptionError):
            return self._on_subscription_error(message)
        if isinstance(message, m.OneOffQueryResult):
            return self._on_one_off(message)
        if isinstance(message, m.InitialConnection):
            raise ProtocolError(ProtocolErrorKind.UNEXPECTED_MESSAGE, "a second InitialConnection")
        raise ProtocolError(ProtocolErrorKind.UNKNOWN_REQUEST, f"{type(message).__name__} for a request never sent")

    def connection_lost(self, reason: str) -> None:
        """The connection ended: nothing more is owed, and every query set is told (managed ones wait to resume)."""
        self._calls.clear()
        self._procedure_calls.clear()
        self._one_offs.clear()
        self._unsubscribes.clear()
        for tracked in self._query_sets.values():
            tracked.query_set.connection_lost(reason)
        self._query_sets.clear()

    def _check_query_sets(self, update: m.TransactionUpdate) -> None:
        for query_set in update.query_sets:
            tracked = self._query_sets.get(query_set.query_set_id)
            if tracked is None or tracked.phase is Phase.PENDING:
                raise ProtocolError(
                    ProtocolErrorKind.UNKNOWN_QUERY_SET,
                    f"update for query set {query_set.query_set_id}, which is not subscribed",
                )

    def _on_reducer_result(self, message: m.ReducerResult) -> CallAnswered:
        reducer = self._calls.get(message.request_id)
        if reducer is None:
            raise ProtocolError(ProtocolErrorKind.UNKNOWN_REQUEST, f"ReducerResult for request {message.request_id}")
        outcome = message.result
        result: ReducerCallResult
        if isinstance(outcome, m.ReducerOk):
            update = outcome.transaction_update
            ops: list[RowOp | RowBatch] = []
            if update.query_sets:  # none when the caller subscribes to nothing the call changed
                self._check_query_sets(update)
                ops = ops_from_transaction(self.schema, update)
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
        return CallAnswered(message.request_id, result)

    def _on_procedure_result(self, message: m.ProcedureResult) -> ProcedureAnswered:
        procedure = self._procedure_calls.pop(message.request_id, None)
        if procedure is None:
            raise ProtocolError(ProtocolErrorKind.UNKNOWN_REQUEST, f"ProcedureResult for request {message.request_id}")
        status = message.status
        result: ProcedureCallResult
        if isinstance(status, m.ProcedureReturned):
            definition = self.schema.procedures.get(procedure)
            try:
                value = definition.decode_return(status.value) if definition is not None else None
            except DecodeError as exc:
                raise ProtocolError(
                    ProtocolErrorKind.UNDECODABLE_FRAME, f"procedure {procedure} returned undecodable bytes: {exc}"
                ) from None
            result = ProcedureReturned(procedure, message.timestamp, value, status.value)
        else:
            result = ProcedureFailed(procedure, message.timestamp, status.message)
        return ProcedureAnswered(message.request_id, result)

    def _on_subscribe_applied(self, message: m.SubscribeApplied) -> None:
        tracked = self._query_sets.get(message.query_set_id)
        if tracked is None or tracked.phase is not Phase.PENDING or tracked.request_id != message.request_id:
            raise ProtocolError(
                ProtocolErrorKind.UNKNOWN_QUERY_SET,
                f"SubscribeApplied for query set {message.query_set_id} (request {message.request_id}), "
                "which is not awaiting its rows",
            )
        ops = ops_from_query_rows(self.schema, message.query_set_id, message.rows, insert=True)
        tracked.phase = Phase.APPLIED
        self.cache.apply(ops, ChangeCause.SUBSCRIBE_APPLIED)
        tracked.query_set.mark_applied()

    def _on_unsubscribe_applied(self, message: m.UnsubscribeApplied) -> UnsubscribeDone:
        tracked = self._query_sets.get(message.query_set_id)
        if tracked is None or tracked.phase is not Phase.UNSUBSCRIBING or message.request_id not in self._unsubscribes:
            raise ProtocolError(
                ProtocolErrorKind.UNKNOWN_QUERY_SET,
                f"UnsubscribeApplied for query set {message.query_set_id} (request {message.request_id})",
            )
        del self._query_sets[message.query_set_id]
        self._unsubscribes.discard(message.request_id)
        self.cache.release_query_set(message.query_set_id, ChangeCause.UNSUBSCRIBED)
        tracked.query_set.mark_ended("unsubscribed")
        return UnsubscribeDone(message.request_id)

    def _on_subscription_error(self, message: m.SubscriptionError) -> UnsubscribeDone | None:
        tracked = self._query_sets.get(message.query_set_id)
        if tracked is None:
            raise ProtocolError(
                ProtocolErrorKind.UNKNOWN_QUERY_SET, f"SubscriptionError for unknown query set {message.query_set_id}"
            )
        del self._query_sets[message.query_set_id]
        self.cache.release_query_set(message.query_set_id, ChangeCause.SUBSCRIPTION_DROPPED)
        tracked.query_set.mark_error(message.error)
        if tracked.request_id in self._unsubscribes:
            self._unsubscribes.discard(tracked.request_id)
            return UnsubscribeDone(tracked.request_id)
        return None

    def _on_one_off(self, message: m.OneOffQueryResult) -> QueryAnswered:
        if message.request_id not in self._one_offs:
            raise ProtocolError(ProtocolErrorKind.UNKNOWN_REQUEST, f"OneOffQueryResult for {message.request_id}")
        self._one_offs.discard(message.request_id)
        if isinstance(message.result, str):
            return QueryAnswered(message.request_id, OneOffQueryError(message.result))
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
        return QueryAnswered(message.request_id, QueryResult(tuple(tables)))
