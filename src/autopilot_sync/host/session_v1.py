"""The v1 subprotocols (`v1.bsatn.spacetimedb`, `v1.json.spacetimedb`) as a codec in front of `ServerSession`.

SpacetimeDB 2.x still serves v1 (`select_protocol` in `crates/client-api/src/routes/subscribe.rs`; the messages in
`crates/client-api-messages/src/websocket/v1.rs`, handled by `crates/core/src/client/message_handlers_v1.rs`). The
session itself stays the one v2 state machine: this codec turns each v1 client message into the session's v2
requests (under request ids of its own, remembering what the client asked), and each v2 answer the session sends
into the v1 message SpacetimeDB sends for it. So ordering, durability holds and send bounds are the session's, for
every protocol alike. Pure and synchronous, like the session (tests/host/test_session_v1.py feeds it bytes).

The translation, by v1 request:
- `Subscribe` (legacy): a query set of the codec's own (ids above u32, never a client's) replacing the previous
  legacy set once the new one is applied → `InitialSubscription`; a refusal → `TransactionUpdate(Failed)`, as
  SpacetimeDB reports a failed legacy subscribe (`MessageExecutionError`);
- `SubscribeSingle` / `SubscribeMulti` → a query set with the client's `query_id` → `SubscribeApplied` (one table) /
  `SubscribeMultiApplied`, refusals `SubscriptionError`; a `query_id` in use → `TransactionUpdate(Failed)` with
  SpacetimeDB's `add_subscription` text (v1 reports the error; v2 closes the socket);
- `Unsubscribe` / `UnsubscribeMulti` → unsubscribe with the dropped rows → `UnsubscribeApplied` /
  `UnsubscribeMultiApplied` (rows as deletes);
- `OneOffQuery` → `OneOffQueryResponse` with the client's `message_id`;
- `CallReducer` → the caller's `TransactionUpdate` (`Committed` with its own rows, or `Failed`); with
  `NoSuccessNotify` a success only reaches it as `TransactionUpdateLight` when its subscribed rows changed;
- every other client's update → `TransactionUpdateLight` (SpacetimeDB 2.x hides the reducer, its arguments and its
  caller from non-callers of a `RawModuleDefV10` module: `send_v1_computed_queries`).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from autopilot_sync.host.engine import HostEngine
from autopilot_sync.host.session import CloseReason, ServerSession
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime import messages as v2
from autopilot_sync.spacetime import messages_v1 as v1
from autopilot_sync.spacetime.errors import DecodeError
from autopilot_sync.spacetime.frames import EncodedMessage
from autopilot_sync.spacetime.rowlist import BsatnRowList
from autopilot_sync.spacetime.sats_json import SatsJsonError, decode_args, to_untyped_json
from autopilot_sync.spacetime.values import ConnectionId, Identity, SumValue, Timestamp

#: Query set ids of legacy `Subscribe`s start here: above every u32 a client may choose as a `query_id`.
LEGACY_QUERY_SETS = 1 << 32

#: SpacetimeDB's refusal of a v1 `SubscribeSingle`/`SubscribeMulti` reading an event table
#: (`add_single_subscription_inner` in `crates/core/src/subscription/module_subscription_actor.rs`).
EVENT_TABLE_REFUSAL = (
    "Subscribing to event tables requires WebSocket v2. "
    "Please upgrade your client SDK and regenerate your module bindings."
)


class V1Schema(Protocol):
    """What the codec needs to know of the module: ids for the wire, argument types, rows as JSON."""

    def table_id(self, table: str) -> int:
        """The table's id as SpacetimeDB numbers it."""
        ...

    def row_json(self, table: str, row: bytes) -> str:
        """One BSATN row of `table` as JSON text (the JSON format's row)."""
        ...

    def reducer_id(self, reducer: str) -> int:
        """The reducer's index in the module (`NO_REDUCER_ID` when there is none)."""
        ...

    def reducer_params(self, reducer: str) -> at.ProductType | None:
        """The reducer's parameters (None: no such reducer)."""
        ...

    def is_event_table(self, table: str) -> bool:
        """Whether `table` is an event table (v1 clients may not subscribe to one)."""
        ...


#: SpacetimeDB numbers user tables from here, in the order the module declares them (ids below are system tables).
FIRST_USER_TABLE_ID = 4096


class EngineV1Schema:
    """`V1Schema` over a running engine: read from the module it runs now (a publish may replace it)."""

    def __init__(self, engine: HostEngine) -> None:
        self.engine = engine

    def table_id(self, table: str) -> int:
        """`FIRST_USER_TABLE_ID` + the table's position in the module definition (0 for a table it lacks)."""
        for index, defined in enumerate(self.engine.module.definition().tables):
            if defined.name == table:
                return FIRST_USER_TABLE_ID + index
        return 0

    def row_json(self, table: str, row: bytes) -> str:
        """The row as `/sql` shows rows (untyped SATS-JSON: an array of the column values)."""
        store = self.engine.datastore[table]
        value = to_untyped_json(store.table.row_type, store.decode(row))
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    def reducer_id(self, reducer: str) -> int:
        """The reducer's position in the module definition."""
        for index, defined in enumerate(self.engine.module.definition().reducers):
            if defined.name == reducer:
                return index
        return v1.NO_REDUCER_ID

    def reducer_params(self, reducer: str) -> at.ProductType | None:
        """The reducer's parameter product, from the engine."""
        defined = self.engine.reducer(reducer)
        return None if defined is None else defined.params

    def is_event_table(self, table: str) -> bool:
        """From the table's definition in the datastore."""
        store = self.engine.datastore.tables.get(table)
        return store is not None and store.table.event


class _Kind(enum.Enum):
    LEGACY = "legacy"
    LEGACY_DROP = "legacy_drop"
    SINGLE = "single"
    MULTI = "multi"
    ONE_OFF = "one_off"
    REDUCER = "reducer"
    PROCEDURE = "procedure"


@dataclass(frozen=True, slots=True)
class _Pending:
    """What the client asked, kept under the session request id until its answer is translated."""

    kind: _Kind
    request_id: int = 0
    query_id: int = 0
    message_id: bytes = b""
    call: v1.ReducerCall | None = None
    quiet: bool = False


@dataclass(eq=False)
class V1Codec:
    """One v1 connection's translation state between its client and its `ServerSession` (module docstring)."""

    fmt: v1.V1Format
    schema: V1Schema
    identity: Identity
    connection_id: ConnectionId
    _pending: dict[int, _Pending] = field(default_factory=dict)
    _next_request: int = 1
    _legacy: int | None = None
    _next_legacy: int = LEGACY_QUERY_SETS
    _refused_sets: list[int] = field(default_factory=list)

    @property
    def text_frames(self) -> bool:
        """Whether server messages go out as text frames (JSON) rather than tagged binary frames (BSATN)."""
        return self.fmt is v1.V1Format.JSON

    # ----- client → session -----

    def receive(self, session: ServerSession, data: bytes | str) -> None:
        """One client frame: binary is BSATN and text is JSON on either v1 protocol, as on SpacetimeDB."""
        try:
            message = v1.decode_client_text(data) if isinstance(data, str) else v1.decode_client_binary(data)
        except DecodeError as exc:
            session.close(CloseReason.DECODE_ERROR, str(exc))
            return
        self._dispatch(session, message)

    def _dispatch(self, session: ServerSession, message: v1.ClientMessage) -> None:
        if isinstance(message, v1.CallReducer):
            self._call_reducer(session, message)
        elif isinstance(message, v1.Subscribe):
            self._legacy_subscribe(session, message)
        elif isinstance(message, v1.SubscribeSingle | v1.SubscribeMulti):
            if message.query_id in session.query_sets:
                text = (
                    f"Subscription with id QuerySetId {{ id: {message.query_id} }} already exists for client: "
                    f"(Identity({self.identity}), ConnectionId({self.connection_id}))"
                )
                session.send_at(0, self._failed(text))
                return
            single = isinstance(message, v1.SubscribeSingle)
            queries = (message.query,) if isinstance(message, v1.SubscribeSingle) else message.query_strings
            kind = _Kind.SINGLE if single else _Kind.MULTI
            rid = self._remember(_Pending(kind, message.request_id, message.query_id))
            session.receive_message(v2.Subscribe(rid, message.query_id, queries))
            self._drop_refused(session)
        elif isinstance(message, v1.Unsubscribe | v1.UnsubscribeMulti):
            kind = _Kind.SINGLE if isinstance(message, v1.Unsubscribe) else _Kind.MULTI
            rid = self._remember(_Pending(kind, message.request_id, message.query_id))
            session.receive_message(v2.Unsubscribe(rid, message.query_id, v2.UnsubscribeFlags.SEND_DROPPED_ROWS))
        elif isinstance(message, v1.OneOffQuery):
            rid = self._remember(_Pending(_Kind.ONE_OFF, message_id=message.message_id))
            session.receive_message(v2.OneOffQuery(rid, message.query_string))
        else:
            if not isinstance(message.args, bytes):  # v1.json would need the arguments converted by the schema
                failed = v1.procedure_internal_error(
                    "procedures are served over v1.bsatn, v2 and v3, not v1.json", Timestamp.now(), message.request_id
                )
                session.send_at(0, EncodedMessage(v1.encode_server_message(self.fmt, failed)))
                return
            rid = self._remember(_Pending(_Kind.PROCEDURE, message.request_id))
            args = message.args
            session.receive_message(v2.CallProcedure(rid, v2.CallProcedureFlags.DEFAULT, message.procedure, args))

    def _drop_refused(self, session: ServerSession) -> None:
        """Take back the query sets answered with a v1 refusal after the session applied them (event tables)."""
        while self._refused_sets:
            drop = self._remember(_Pending(_Kind.LEGACY_DROP))
            session.receive_message(v2.Unsubscribe(drop, self._refused_sets.pop(), v2.UnsubscribeFlags.DEFAULT))

    def _remember(self, pending: _Pending) -> int:
        rid = self._next_request
        self._next_request = rid + 1 if rid < 0xFFFF_FFFF else 1
        self._pending[rid] = pending
        return rid

    def _legacy_subscribe(self, session: ServerSession, message: v1.Subscribe) -> None:
        query_set = self._next_legacy
        self._next_legacy += 1
        rid = self._remember(_Pending(_Kind.LEGACY, message.request_id))
        session.receive_message(v2.Subscribe(rid, query_set, message.query_strings))
        if query_set not in session.query_sets:
            return  # refused: the previous legacy subscription stays, as on SpacetimeDB
        previous, self._legacy = self._legacy, query_set
        if previous is not None:
            drop = self._remember(_Pending(_Kind.LEGACY_DROP))
            session.receive_message(v2.Unsubscribe(drop, previous, v2.UnsubscribeFlags.DEFAULT))

    def _call_reducer(self, session: ServerSession, message: v1.CallReducer) -> None:
        params = self.schema.reducer_params(message.reducer)
        if isinstance(message.args, str):
            if params is None:
                data = b""
            else:
                try:
                    data = bsatn.encode(params, decode_args(params, message.args))
                except SatsJsonError as exc:
                    text = f"invalid arguments for reducer {message.reducer}: {exc}"
                    session.send_at(0, self._failed(text, message.reducer))
                    return
        else:
            data = message.args
        call = v1.ReducerCall(
            message.reducer,
            self.schema.reducer_id(message.reducer),
            self._wire_args(params, message.args, data),
            message.request_id,
            self.identity,
            self.connection_id,
        )
        quiet = message.flags is v1.CallReducerFlags.NO_SUCCESS_NOTIFY
        rid = self._remember(_Pending(_Kind.REDUCER, message.request_id, call=call, quiet=quiet))
        session.receive_message(v2.CallReducer(rid, v2.CallReducerFlags.DEFAULT, message.reducer, data))

    def _wire_args(self, params: at.ProductType | None, sent: bytes | str, data: bytes) -> bytes | str:
        """The arguments as the caller's `TransactionUpdate` repeats them, in the connection's format."""
        if self.fmt is v1.V1Format.BSATN:
            return data
        if isinstance(sent, str):
            return sent
        if params is None:
            return ""
        try:
            value = bsatn.codec(params).decode_prefix(data, 0)[0]
        except DecodeError:
            return ""
        return json.dumps(to_untyped_json(params, value), separators=(",", ":"), ensure_ascii=False)

    # ----- session → client -----

    def encode(self, message: v2.ServerMessage) -> EncodedMessage | None:
        """The v1 message SpacetimeDB sends for this session answer or update (None: nothing is sent)."""
        value = self._translate(message)
        if value is None:
            return None
        return EncodedMessage(v1.encode_server_message(self.fmt, value))

    def _translate(self, message: v2.ServerMessage) -> SumValue | None:
        fmt = self.fmt
        if isinstance(message, v2.TransactionUpdate):
            return v1.transaction_update_light(fmt, 0, self._update_tables(message))
        if isinstance(message, v2.InitialConnection):
            return v1.identity_token(message.identity, message.token, message.connection_id)
        if message.request_id is None:  # a SubscriptionError of a set that failed during an update
            return v1.subscription_error(None, None, message.error)
        pending = self._pending.pop(message.request_id, None)
        if pending is None:
            return None
        if isinstance(message, v2.ReducerResult):
            return self._reducer_result(pending, message)
        if isinstance(message, v2.SubscribeApplied):
            reads_events = any(self.schema.is_event_table(table.table) for table in message.rows.tables)
            if reads_events and pending.kind is not _Kind.LEGACY:  # the legacy path has no such check
                self._refused_sets.append(message.query_set_id)
                return v1.subscription_error(pending.request_id, pending.query_id, EVENT_TABLE_REFUSAL)
            return self._applied(pending, message.rows, unsubscribe=False)
        if isinstance(message, v2.UnsubscribeApplied):
            if pending.kind is _Kind.LEGACY_DROP:
                return None
            return self._applied(pending, message.rows or v2.QueryRows(()), unsubscribe=True)
        if isinstance(message, v2.SubscriptionError):
            if pending.kind is _Kind.LEGACY:
                return self._failed_value(message.error)
            if pending.kind is _Kind.LEGACY_DROP:
                return None
            return v1.subscription_error(pending.request_id, pending.query_id, message.error)
        if isinstance(message, v2.OneOffQueryResult):
            result = message.result
            if isinstance(result, str):
                return v1.one_off_query_response(pending.message_id, result)
            tables = [(t.table, self._rows(t.table, t.rows)) for t in result.tables]
            return v1.one_off_query_response(pending.message_id, tables)
        status = message.status
        if isinstance(status, v2.ProcedureReturned):
            duration = message.total_host_execution_duration
            return v1.procedure_returned(status.value, message.timestamp, duration, pending.request_id)
        return v1.procedure_internal_error(status.message, message.timestamp, pending.request_id)

    def _applied(self, pending: _Pending, rows: v2.QueryRows, *, unsubscribe: bool) -> SumValue:
        tables = self._query_rows(rows, deletes=unsubscribe)
        if pending.kind is _Kind.LEGACY:
            return v1.initial_subscription(self.fmt, tables, pending.request_id)
        if pending.kind is _Kind.SINGLE:
            table = tables[0] if tables else v1.TableRows(0, "", ())
            return v1.subscribe_applied(self.fmt, pending.request_id, pending.query_id, table, unsubscribe=unsubscribe)
        return v1.multi_applied(self.fmt, pending.request_id, pending.query_id, tables, unsubscribe=unsubscribe)

    def _reducer_result(self, pending: _Pending, message: v2.ReducerResult) -> SumValue | None:
        call = pending.call
        if call is None:
            return None
        outcome = message.result
        if isinstance(outcome, v2.ReducerOk | v2.ReducerOkEmpty):
            update = outcome.transaction_update if isinstance(outcome, v2.ReducerOk) else v2.TransactionUpdate(())
            tables = self._update_tables(update)
            if pending.quiet:
                return v1.transaction_update_light(self.fmt, call.request_id, tables) if tables else None
            return v1.transaction_update(self.fmt, call, message.timestamp, tables)
        text = _bsatn_string(outcome.error) if isinstance(outcome, v2.ReducerErr) else outcome.message
        return v1.transaction_update(self.fmt, call, message.timestamp, text)

    def _failed(self, text: str, reducer: str = "") -> EncodedMessage:
        """A `MessageExecutionError` as SpacetimeDB reports it on v1: a `TransactionUpdate(Failed)` with no call."""
        return EncodedMessage(v1.encode_server_message(self.fmt, self._failed_value(text, reducer)))

    def _failed_value(self, text: str, reducer: str = "") -> SumValue:
        call = v1.ReducerCall(
            reducer,
            v1.NO_REDUCER_ID,
            b"" if self.fmt is v1.V1Format.BSATN else "",
            0,
            self.identity,
            self.connection_id,
        )
        return v1.transaction_update(self.fmt, call, Timestamp.now(), text)

    # ----- rows -----

    def _rows(self, table: str, rows: BsatnRowList) -> v1.RowsValue:
        if self.fmt is v1.V1Format.BSATN:
            return v1.bsatn_rows(rows)
        return [self.schema.row_json(table, row) for row in rows]

    def _empty(self) -> v1.RowsValue:
        return self._rows("", BsatnRowList.empty())

    def _query_rows(self, rows: v2.QueryRows, *, deletes: bool) -> list[v1.TableRows]:
        out = []
        for table in rows.tables:
            listed = self._rows(table.table, table.rows)
            pair = (listed, self._empty()) if deletes else (self._empty(), listed)
            out.append(v1.TableRows(self.schema.table_id(table.table), table.table, ((*pair, len(table.rows)),)))
        return out

    def _update_tables(self, update: v2.TransactionUpdate) -> list[v1.TableRows]:
        """Per table, one (deletes, inserts) entry per query set that saw it: v1 groups by table, not by set."""
        by_table: dict[str, list[tuple[v1.RowsValue, v1.RowsValue, int]]] = {}
        for query_set in update.query_sets:
            for table in query_set.tables:
                entries = by_table.setdefault(table.table_name, [])
                entries.extend(self._entries(table.table_name, table.rows))
        schema = self.schema
        return [v1.TableRows(schema.table_id(name), name, tuple(rows)) for name, rows in by_table.items() if rows]

    def _entries(
        self, table: str, rows: Iterable[v2.TableUpdateRows]
    ) -> Iterable[tuple[v1.RowsValue, v1.RowsValue, int]]:
        for entry in rows:
            if isinstance(entry, v2.PersistentTableRows):  # v1 has no event tables (SpacetimeDB refuses them)
                count = len(entry.deletes) + len(entry.inserts)
                yield self._rows(table, entry.deletes), self._rows(table, entry.inserts), count


def _bsatn_string(data: bytes) -> str:
    """A reducer's error value (a BSATN string) as text; bytes that are not one are shown as they are."""
    try:
        text = bsatn.decode(at.STRING, data)
    except DecodeError:
        return data.decode("utf-8", "replace")
    return str(text)
