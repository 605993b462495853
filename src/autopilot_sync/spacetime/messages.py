"""The SpacetimeDB v2 WebSocket messages (`crates/client-api-messages/src/websocket/v2.rs`), typed, with BSATN codecs.

Every message is a frozen dataclass whose fields are in the Rust declaration order, which is the wire order. The
codecs are written by hand instead of going through the generic `bsatn` codec: the host encodes a
`TransactionUpdate` for every client on every commit and the client decodes every one of them, so the hot path is a
handful of `struct` packs into one `bytearray` with no intermediate generic values. `CLIENT_MESSAGE_TYPE` and
`SERVER_MESSAGE_TYPE` describe the same shapes as algebraic types; the tests hold the two views together.

Decoding untrusted bytes raises only `DecodeError` (truncation, bad tags, invalid UTF-8, bad row lists, trailing
bytes).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby
from operator import attrgetter
from typing import NamedTuple

from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime.errors import DecodeError
from autopilot_sync.spacetime.rowlist import (
    BsatnRowList,
    FixedSize,
    RowOffsets,
    decode_row_list,
    encode_row_list_into,
)
from autopilot_sync.spacetime.values import ConnectionId, Identity, TimeDuration, Timestamp

__all__ = [
    "CLIENT_MESSAGE_TYPE",
    "SERVER_MESSAGE_TYPE",
    "BsatnRowList",
    "CallProcedure",
    "CallProcedureFlags",
    "CallReducer",
    "CallReducerFlags",
    "ClientMessage",
    "EventTableRows",
    "FixedSize",
    "InitialConnection",
    "OneOffQuery",
    "OneOffQueryResult",
    "PersistentTableRows",
    "ProcedureInternalError",
    "ProcedureResult",
    "ProcedureReturned",
    "ProcedureStatus",
    "QueryRows",
    "QuerySetUpdate",
    "ReducerErr",
    "ReducerInternalError",
    "ReducerOk",
    "ReducerOkEmpty",
    "ReducerOutcome",
    "ReducerResult",
    "RowOffsets",
    "ServerMessage",
    "SingleTableRows",
    "Subscribe",
    "SubscribeApplied",
    "SubscriptionError",
    "TableUpdate",
    "TableUpdateRows",
    "TransactionUpdate",
    "Unsubscribe",
    "UnsubscribeApplied",
    "UnsubscribeFlags",
    "decode_client_message",
    "decode_client_message_prefix",
    "decode_server_message",
    "decode_server_message_prefix",
    "encode_client_message",
    "encode_client_message_into",
    "encode_reducer_ok_without_updates",
    "encode_server_message",
    "encode_server_message_into",
    "query_rows",
]


# ----- client → server -----


class UnsubscribeFlags(enum.IntEnum):
    """`Unsubscribe.flags`: a BSATN sum of unit variants (one tag byte)."""

    DEFAULT = 0
    SEND_DROPPED_ROWS = 1  #: the server answers with the rows the client should drop from its cache


class CallReducerFlags(enum.IntEnum):
    """`CallReducer.flags`: a raw u8 that must be 0 (the real server rejects any other value when decoding)."""

    DEFAULT = 0


class CallProcedureFlags(enum.IntEnum):
    """`CallProcedure.flags`: a raw u8 that must be 0, like `CallReducerFlags`."""

    DEFAULT = 0


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Tag 0: subscribe a client-chosen query set id to a group of `SELECT`s."""

    request_id: int
    query_set_id: int
    query_strings: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Tag 1: end a query set's subscription."""

    request_id: int
    query_set_id: int
    flags: UnsubscribeFlags = UnsubscribeFlags.DEFAULT


@dataclass(frozen=True, slots=True)
class OneOffQuery:
    """Tag 2: run one SQL query once, no live updates."""

    request_id: int
    query_string: str


@dataclass(frozen=True, slots=True)
class CallReducer:
    """Tag 3: call a reducer; `args` is the BSATN of the reducer's parameter product."""

    request_id: int
    flags: CallReducerFlags
    reducer: str
    args: bytes


@dataclass(frozen=True, slots=True)
class CallProcedure:
    """Tag 4: call a procedure; `args` is the BSATN of its parameter product."""

    request_id: int
    flags: CallProcedureFlags
    procedure: str
    args: bytes


ClientMessage = Subscribe | Unsubscribe | OneOffQuery | CallReducer | CallProcedure


# ----- server → client: shared row containers -----


@dataclass(frozen=True, slots=True)
class SingleTableRows:
    """The rows of one table resident when a query ran."""

    table: str
    rows: BsatnRowList


@dataclass(frozen=True, slots=True)
class QueryRows:
    """Rows per table for a snapshot answer (`SubscribeApplied`, `UnsubscribeApplied`, `OneOffQueryResult`)."""

    tables: tuple[SingleTableRows, ...]


@dataclass(frozen=True, slots=True)
class PersistentTableRows:
    """`TableUpdateRows` tag 0: a stored table's delta. Inserts come first on the wire."""

    inserts: BsatnRowList
    deletes: BsatnRowList


@dataclass(frozen=True, slots=True)
class EventTableRows:
    """`TableUpdateRows` tag 1: rows of an event table, broadcast once and never stored."""

    events: BsatnRowList


TableUpdateRows = PersistentTableRows | EventTableRows


@dataclass(frozen=True, slots=True)
class TableUpdate:
    """One table's changes inside a query set update (the server may send several for the same table)."""

    table_name: str
    rows: tuple[TableUpdateRows, ...]


class QuerySetUpdate(NamedTuple):
    """The changes one transaction made to the results of one query set."""

    query_set_id: int
    tables: tuple[TableUpdate, ...]


# ----- server → client: messages -----


@dataclass(frozen=True, slots=True)
class InitialConnection:
    """Tag 0: the first message on every connection: who the client is and the token to reconnect with."""

    identity: Identity
    connection_id: ConnectionId
    token: str


@dataclass(frozen=True, slots=True)
class SubscribeApplied:
    """Tag 1: a query set is live; `rows` are its initial matching rows."""

    request_id: int
    query_set_id: int
    rows: QueryRows


@dataclass(frozen=True, slots=True)
class UnsubscribeApplied:
    """Tag 2: a query set has ended; `rows` only when the client asked for the dropped rows."""

    request_id: int
    query_set_id: int
    rows: QueryRows | None


@dataclass(frozen=True, slots=True)
class SubscriptionError:
    """Tag 3: a query set failed; `request_id` is None when it failed later, during an update."""

    request_id: int | None
    query_set_id: int
    error: str


@dataclass(frozen=True, slots=True)
class TransactionUpdate:
    """Tag 4: the effect of one committed transaction on this client's query sets."""

    query_sets: tuple[QuerySetUpdate, ...]


@dataclass(frozen=True, slots=True)
class OneOffQueryResult:
    """Tag 5: the answer to a `OneOffQuery`: rows (`Result::Ok`) or an error text (`Result::Err`)."""

    request_id: int
    result: QueryRows | str


@dataclass(frozen=True, slots=True)
class ReducerOk:
    """`ReducerOutcome` tag 0: committed, with the return value and the caller's own query-set updates."""

    ret_value: bytes
    transaction_update: TransactionUpdate


@dataclass(frozen=True, slots=True)
class ReducerOkEmpty:
    """`ReducerOutcome` tag 1: committed with an empty return value and no query-set updates."""


@dataclass(frozen=True, slots=True)
class ReducerErr:
    """`ReducerOutcome` tag 2: the reducer returned its error; `error` is the BSATN of the error value (a string)."""

    error: bytes


@dataclass(frozen=True, slots=True)
class ReducerInternalError:
    """`ReducerOutcome` tag 3: panic, unknown reducer, bad arguments or a host failure."""

    message: str


ReducerOutcome = ReducerOk | ReducerOkEmpty | ReducerErr | ReducerInternalError


@dataclass(frozen=True, slots=True)
class ReducerResult:
    """Tag 6: the caller's answer to `CallReducer`."""

    request_id: int
    timestamp: Timestamp
    result: ReducerOutcome


@dataclass(frozen=True, slots=True)
class ProcedureReturned:
    """`ProcedureStatus` tag 0: the BSATN of the procedure's return value."""

    value: bytes


@dataclass(frozen=True, slots=True)
class ProcedureInternalError:
    """`ProcedureStatus` tag 1: the call failed in the host."""

    message: str


ProcedureStatus = ProcedureReturned | ProcedureInternalError


@dataclass(frozen=True, slots=True)
class ProcedureResult:
    """Tag 7: the answer to `CallProcedure` (note `request_id` comes last on the wire)."""

    status: ProcedureStatus
    timestamp: Timestamp
    total_host_execution_duration: TimeDuration
    request_id: int


ServerMessage = (
    InitialConnection
    | SubscribeApplied
    | UnsubscribeApplied
    | SubscriptionError
    | TransactionUpdate
    | OneOffQueryResult
    | ReducerResult
    | ProcedureResult
)


# ----- the same shapes as algebraic types -----

_ROW_SIZE_HINT = at.sum_type(("FixedSize", at.U16), ("RowOffsets", at.array(at.U64)))
_BSATN_ROW_LIST = at.product(("size_hint", _ROW_SIZE_HINT), ("rows_data", at.BYTES))
_SINGLE_TABLE_ROWS = at.product(("table", at.STRING), ("rows", _BSATN_ROW_LIST))
_QUERY_ROWS = at.product(("tables", at.array(_SINGLE_TABLE_ROWS)))
_TABLE_UPDATE_ROWS = at.sum_type(
    ("PersistentTable", at.product(("inserts", _BSATN_ROW_LIST), ("deletes", _BSATN_ROW_LIST))),
    ("EventTable", at.product(("events", _BSATN_ROW_LIST))),
)
_TABLE_UPDATE = at.product(("table_name", at.STRING), ("rows", at.array(_TABLE_UPDATE_ROWS)))
_QUERY_SET_UPDATE = at.product(("query_set_id", at.U32), ("tables", at.array(_TABLE_UPDATE)))
_TRANSACTION_UPDATE = at.product(("query_sets", at.array(_QUERY_SET_UPDATE)))

#: `v2::ClientMessage` as an algebraic type (newtype `QuerySetId` flattened to its u32, as BSATN does).
CLIENT_MESSAGE_TYPE = at.sum_type(
    ("Subscribe", at.product(("request_id", at.U32), ("query_set_id", at.U32), ("query_strings", at.array(at.STRING)))),
    (
        "Unsubscribe",
        at.product(
            ("request_id", at.U32),
            ("query_set_id", at.U32),
            ("flags", at.sum_type(("Default", at.UNIT), ("SendDroppedRows", at.UNIT))),
        ),
    ),
    ("OneOffQuery", at.product(("request_id", at.U32), ("query_string", at.STRING))),
    (
        "CallReducer",
        at.product(("request_id", at.U32), ("flags", at.U8), ("reducer", at.STRING), ("args", at.BYTES)),
    ),
    (
        "CallProcedure",
        at.product(("request_id", at.U32), ("flags", at.U8), ("procedure", at.STRING), ("args", at.BYTES)),
    ),
)

#: `v2::ServerMessage` as an algebraic type.
SERVER_MESSAGE_TYPE = at.sum_type(
    (
        "InitialConnection",
        at.product(("identity", at.IDENTITY), ("connection_id", at.CONNECTION_ID), ("token", at.STRING)),
    ),
    ("SubscribeApplied", at.product(("request_id", at.U32), ("query_set_id", at.U32), ("rows", _QUERY_ROWS))),
    (
        "UnsubscribeApplied",
        at.product(("request_id", at.U32), ("query_set_id", at.U32), ("rows", at.option(_QUERY_ROWS))),
    ),
    (
        "SubscriptionError",
        at.product(("request_id", at.option(at.U32)), ("query_set_id", at.U32), ("error", at.STRING)),
    ),
    ("TransactionUpdate", _TRANSACTION_UPDATE),
    ("OneOffQueryResult", at.product(("request_id", at.U32), ("result", at.result(_QUERY_ROWS, at.STRING)))),
    (
        "ReducerResult",
        at.product(
            ("request_id", at.U32),
            ("timestamp", at.TIMESTAMP),
            (
                "result",
                at.sum_type(
                    ("Ok", at.product(("ret_value", at.BYTES), ("transaction_update", _TRANSACTION_UPDATE))),
                    ("OkEmpty", at.UNIT),
                    ("Err", at.BYTES),
                    ("InternalError", at.STRING),
                ),
            ),
        ),
    ),
    (
        "ProcedureResult",
        at.product(
            ("status", at.sum_type(("Returned", at.BYTES), ("InternalError", at.STRING))),
            ("timestamp", at.TIMESTAMP),
            ("total_host_execution_duration", at.TIME_DURATION),
            ("request_id", at.U32),
        ),
    ),
)


# ----- encoding -----

_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_U32_U32 = struct.Struct("<II")
_U8_U32 = struct.Struct("<BI")


def _put_str(out: bytearray, text: str) -> None:
    raw = text.encode("utf-8")
    out += _U32.pack(len(raw))
    out += raw


def _put_bytes(out: bytearray, data: bytes) -> None:
    out += _U32.pack(len(data))
    out += data


def _put_query_rows(out: bytearray, rows: QueryRows) -> None:
    tables = rows.tables
    out += _U32.pack(len(tables))
    for table in tables:
        _put_str(out, table.table)
        encode_row_list_into(out, table.rows)


def _put_transaction_update(out: bytearray, update: TransactionUpdate) -> None:
    query_sets = update.query_sets
    out += _U32.pack(len(query_sets))
    # Query sets with equal rows share one `tables` tuple (the subscription engine builds it once): encode it once,
    # and write a run of consecutive query sets sharing it in one join (a client holding hundreds of sets over the
    # same rows costs one C-level join per commit, not a Python step per set). `groupby` compares neighbours' tuples
    # (identity first, so shared ones cost nothing; equal ones make equal bytes). Every tuple stays alive in `update`.
    encoded: dict[int, bytes] = {}
    for tables, run in groupby(query_sets, key=_TABLES):
        body = encoded.get(id(tables))
        if body is None:
            buffer = bytearray()
            _put_tables(buffer, tables)
            body = encoded[id(tables)] = bytes(buffer)
        out += body.join(map(_U32.pack, map(_QUERY_SET_ID, run)))
        out += body


_TABLES = attrgetter("tables")
_QUERY_SET_ID = attrgetter("query_set_id")


def _put_tables(out: bytearray, tables: tuple[TableUpdate, ...]) -> None:
    out += _U32.pack(len(tables))
    for table in tables:
        _put_str(out, table.table_name)
        rows = table.rows
        out += _U32.pack(len(rows))
        for entry in rows:
            if isinstance(entry, PersistentTableRows):
                out.append(0)
                encode_row_list_into(out, entry.inserts)
                encode_row_list_into(out, entry.deletes)
            elif isinstance(entry, EventTableRows):
                out.append(1)
                encode_row_list_into(out, entry.events)
            else:
                raise TypeError(f"not a TableUpdateRows: {entry!r:.80}")


def encode_client_message_into(out: bytearray, msg: ClientMessage) -> None:
    """Append the BSATN of a client message to `out` (v3 frames concatenate several).

    Raises ValueError when a number does not fit its field (a u32 id out of range), TypeError on a foreign object.
    """
    try:
        _encode_client(out, msg)
    except struct.error as exc:
        raise ValueError(f"{type(msg).__name__} does not fit its wire types: {exc}") from None


def _encode_client(out: bytearray, msg: ClientMessage) -> None:
    if isinstance(msg, Subscribe):
        out.append(0)
        out += _U32_U32.pack(msg.request_id, msg.query_set_id)
        out += _U32.pack(len(msg.query_strings))
        for query in msg.query_strings:
            _put_str(out, query)
    elif isinstance(msg, Unsubscribe):
        out.append(1)
        out += _U32_U32.pack(msg.request_id, msg.query_set_id)
        out.append(int(msg.flags))
    elif isinstance(msg, OneOffQuery):
        out.append(2)
        out += _U32.pack(msg.request_id)
        _put_str(out, msg.query_string)
    elif isinstance(msg, CallReducer):
        out.append(3)
        out += _U32.pack(msg.request_id)
        out.append(int(msg.flags))
        _put_str(out, msg.reducer)
        _put_bytes(out, msg.args)
    elif isinstance(msg, CallProcedure):
        out.append(4)
        out += _U32.pack(msg.request_id)
        out.append(int(msg.flags))
        _put_str(out, msg.procedure)
        _put_bytes(out, msg.args)
    else:
        raise TypeError(f"not a ClientMessage: {msg!r:.80}")


def encode_client_message(msg: ClientMessage) -> bytes:
    """BSATN bytes of one client message (one v2 binary frame)."""
    out = bytearray()
    encode_client_message_into(out, msg)
    return bytes(out)


def encode_server_message_into(out: bytearray, msg: ServerMessage) -> None:
    """Append the BSATN of a server message to `out` (frame bodies are built this way, one or several messages).

    Raises ValueError when a number does not fit its field, TypeError on a foreign object.
    """
    try:
        _encode_server(out, msg)
    except (struct.error, OverflowError) as exc:
        raise ValueError(f"{type(msg).__name__} does not fit its wire types: {exc}") from None


def _encode_server(out: bytearray, msg: ServerMessage) -> None:
    if isinstance(msg, TransactionUpdate):
        out.append(4)
        _put_transaction_update(out, msg)
    elif isinstance(msg, ReducerResult):
        out.append(6)
        out += _U32.pack(msg.request_id)
        out += _I64.pack(msg.timestamp.micros)
        outcome = msg.result
        if isinstance(outcome, ReducerOk):
            out.append(0)
            _put_bytes(out, outcome.ret_value)
            _put_transaction_update(out, outcome.transaction_update)
        elif isinstance(outcome, ReducerOkEmpty):
            out.append(1)
        elif isinstance(outcome, ReducerErr):
            out.append(2)
            _put_bytes(out, outcome.error)
        elif isinstance(outcome, ReducerInternalError):
            out.append(3)
            _put_str(out, outcome.message)
        else:
            raise TypeError(f"not a ReducerOutcome: {outcome!r:.80}")
    elif isinstance(msg, InitialConnection):
        out.append(0)
        out += msg.identity.value.to_bytes(32, "little")
        out += msg.connection_id.value.to_bytes(16, "little")
        _put_str(out, msg.token)
    elif isinstance(msg, SubscribeApplied):
        out.append(1)
        out += _U32_U32.pack(msg.request_id, msg.query_set_id)
        _put_query_rows(out, msg.rows)
    elif isinstance(msg, UnsubscribeApplied):
        out.append(2)
        out += _U32_U32.pack(msg.request_id, msg.query_set_id)
        if msg.rows is None:
            out.append(1)
        else:
            out.append(0)
            _put_query_rows(out, msg.rows)
    elif isinstance(msg, SubscriptionError):
        out.append(3)
        if msg.request_id is None:
            out.append(1)
        else:
            out += _U8_U32.pack(0, msg.request_id)
        out += _U32.pack(msg.query_set_id)
        _put_str(out, msg.error)
    elif isinstance(msg, OneOffQueryResult):
        out.append(5)
        out += _U32.pack(msg.request_id)
        if isinstance(msg.result, str):
            out.append(1)
            _put_str(out, msg.result)
        else:
            out.append(0)
            _put_query_rows(out, msg.result)
    elif isinstance(msg, ProcedureResult):
        out.append(7)
        status = msg.status
        if isinstance(status, ProcedureReturned):
            out.append(0)
            _put_bytes(out, status.value)
        elif isinstance(status, ProcedureInternalError):
            out.append(1)
            _put_str(out, status.message)
        else:
            raise TypeError(f"not a ProcedureStatus: {status!r:.80}")
        out += _I64.pack(msg.timestamp.micros)
        out += _I64.pack(msg.total_host_execution_duration.micros)
        out += _U32.pack(msg.request_id)
    else:
        raise TypeError(f"not a ServerMessage: {msg!r:.80}")


def encode_server_message(msg: ServerMessage) -> bytes:
    """BSATN bytes of one server message (the body of a v2 frame, before the compression tag)."""
    out = bytearray()
    encode_server_message_into(out, msg)
    return bytes(out)


#: `ReducerResult` tag, request id, timestamp, `ReducerOk` tag, empty return value, no query-set updates.
_REDUCER_OK_WITHOUT_UPDATES = struct.Struct("<BIqBII")


def encode_reducer_ok_without_updates(request_id: int, timestamp: Timestamp) -> bytes:
    """The bytes of `ReducerResult(request_id, timestamp, ReducerOk(b"", TransactionUpdate(())))`, in one `pack`.

    Why: it is the answer to nearly every committed call (a producer subscribes to nothing it writes), and building
    three message objects to walk them again cost more than the rest of the reply (docs/performance.md, "Round 5 —
    percall"). ValueError when a number does not fit, as `encode_server_message`.
    """
    try:
        return _REDUCER_OK_WITHOUT_UPDATES.pack(6, request_id, timestamp.micros, 0, 0, 0)
    except struct.error as exc:
        raise ValueError(f"ReducerResult does not fit its wire types: {exc}") from None


# ----- decoding -----


class _Reader:
    """Cursor over untrusted bytes; every read checks bounds and raises DecodeError."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data)

    def _need(self, size: int, what: str) -> int:
        pos = self.pos
        if pos + size > self.end:
            raise DecodeError(f"truncated input: {what} needs {size} bytes at offset {pos}, have {self.end - pos}")
        self.pos = pos + size
        return pos

    def u8(self, what: str) -> int:
        pos = self._need(1, what)
        return self.data[pos]

    def u32(self, what: str) -> int:
        pos = self._need(4, what)
        value: int = _U32.unpack_from(self.data, pos)[0]
        return value

    def i64(self, what: str) -> int:
        pos = self._need(8, what)
        value: int = _I64.unpack_from(self.data, pos)[0]
        return value

    def uint(self, size: int, what: str) -> int:
        pos = self._need(size, what)
        return int.from_bytes(self.data[pos : pos + size], "little")

    def raw(self, what: str) -> bytes:
        size = self.u32(what)
        pos = self._need(size, what)
        return self.data[pos : pos + size]

    def text(self, what: str) -> str:
        raw = self.raw(what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"invalid UTF-8 in {what}: {exc.reason}") from None

    def count(self, min_size: int, what: str) -> int:
        """An array length, refused when even minimal elements could not fit in what is left."""
        count = self.u32(what)
        if count * min_size > self.end - self.pos:
            raise DecodeError(f"{what} count {count} exceeds the {self.end - self.pos} bytes left")
        return count

    def row_list(self) -> BsatnRowList:
        rows, self.pos = decode_row_list(self.data, self.pos)
        return rows


# Smallest encodings, used to bound array counts before looping.
_MIN_ROW_LIST = 1 + 2 + 4
_MIN_SINGLE_TABLE_ROWS = 4 + _MIN_ROW_LIST
_MIN_TABLE_UPDATE_ROWS = 1 + _MIN_ROW_LIST
_MIN_TABLE_UPDATE = 4 + 4
_MIN_QUERY_SET_UPDATE = 4 + 4


def _query_rows(reader: _Reader) -> QueryRows:
    count = reader.count(_MIN_SINGLE_TABLE_ROWS, "QueryRows.tables")
    return QueryRows(tuple(SingleTableRows(reader.text("table"), reader.row_list()) for _ in range(count)))


def _table_update_rows(reader: _Reader) -> TableUpdateRows:
    tag = reader.u8("TableUpdateRows tag")
    if tag == 0:
        inserts = reader.row_list()
        return PersistentTableRows(inserts, reader.row_list())
    if tag == 1:
        return EventTableRows(reader.row_list())
    raise DecodeError(f"invalid TableUpdateRows tag {tag}")


def _transaction_update(reader: _Reader) -> TransactionUpdate:
    """A `TransactionUpdate` body: the bounds checks inlined (a live update is one row in one table of one set).

    Anything the inlined path does not like (short data, a count that cannot fit, bad UTF-8, a bad tag) is read
    again by `_checked_transaction_update`, so the `DecodeError` raised is the checked path's, word for word.
    """
    data, start, end = reader.data, reader.pos, reader.end
    try:
        (set_count,) = _U32.unpack_from(data, start)
        pos = start + 4
        if set_count * _MIN_QUERY_SET_UPDATE > end - pos:
            raise _RecheckError
        sets = []
        for _ in range(set_count):
            query_set_id, table_count = _U32_U32.unpack_from(data, pos)
            pos += 8
            if table_count * _MIN_TABLE_UPDATE > end - pos:
                raise _RecheckError
            tables = []
            for _ in range(table_count):
                (size,) = _U32.unpack_from(data, pos)
                pos += 4
                if size > end - pos:
                    raise _RecheckError
                name = data[pos : pos + size].decode("utf-8")
                pos += size
                (row_count,) = _U32.unpack_from(data, pos)
                pos += 4
                if row_count * _MIN_TABLE_UPDATE_ROWS > end - pos:
                    raise _RecheckError
                entries: list[TableUpdateRows] = []
                for _ in range(row_count):
                    tag = data[pos]
                    if tag == 0:
                        inserts, pos = decode_row_list(data, pos + 1)
                        deletes, pos = decode_row_list(data, pos)
                        entries.append(PersistentTableRows(inserts, deletes))
                    elif tag == 1:
                        events, pos = decode_row_list(data, pos + 1)
                        entries.append(EventTableRows(events))
                    else:
                        raise _RecheckError
                tables.append(TableUpdate(name, tuple(entries)))
            sets.append(QuerySetUpdate(query_set_id, tuple(tables)))
    except (_RecheckError, struct.error, IndexError, UnicodeDecodeError, DecodeError):
        reader.pos = start
        return _checked_transaction_update(reader)
    reader.pos = pos
    return TransactionUpdate(tuple(sets))


class _RecheckError(Exception):
    """The inlined `TransactionUpdate` read met something only the checked read describes."""


def _checked_transaction_update(reader: _Reader) -> TransactionUpdate:
    sets = []
    for _ in range(reader.count(_MIN_QUERY_SET_UPDATE, "TransactionUpdate.query_sets")):
        query_set_id = reader.u32("query_set_id")
        tables = []
        for _ in range(reader.count(_MIN_TABLE_UPDATE, "QuerySetUpdate.tables")):
            name = reader.text("table_name")
            count = reader.count(_MIN_TABLE_UPDATE_ROWS, "TableUpdate.rows")
            tables.append(TableUpdate(name, tuple(_table_update_rows(reader) for _ in range(count))))
        sets.append(QuerySetUpdate(query_set_id, tuple(tables)))
    return TransactionUpdate(tuple(sets))


def _option_tag(reader: _Reader, what: str) -> bool:
    tag = reader.u8(what)
    if tag > 1:
        raise DecodeError(f"invalid Option tag {tag} in {what}")
    return tag == 0


def _client_message(reader: _Reader) -> ClientMessage:
    tag = reader.u8("ClientMessage tag")
    if tag == 0:
        request_id = reader.u32("request_id")
        query_set_id = reader.u32("query_set_id")
        count = reader.count(4, "query_strings")
        return Subscribe(request_id, query_set_id, tuple(reader.text("query string") for _ in range(count)))
    if tag == 1:
        request_id = reader.u32("request_id")
        query_set_id = reader.u32("query_set_id")
        flags = reader.u8("UnsubscribeFlags")
        if flags > 1:
            raise DecodeError(f"invalid UnsubscribeFlags tag {flags}")
        return Unsubscribe(request_id, query_set_id, UnsubscribeFlags(flags))
    if tag == 2:
        request_id = reader.u32("request_id")
        return OneOffQuery(request_id, reader.text("query_string"))
    if tag in (3, 4):
        request_id = reader.u32("request_id")
        flags = reader.u8("flags")
        if flags != 0:
            raise DecodeError(f"invalid call {'reducer' if tag == 3 else 'procedure'} flag {flags}")
        name = reader.text("reducer" if tag == 3 else "procedure")
        args = reader.raw("args")
        if tag == 3:
            return CallReducer(request_id, CallReducerFlags.DEFAULT, name, args)
        return CallProcedure(request_id, CallProcedureFlags.DEFAULT, name, args)
    raise DecodeError(f"invalid ClientMessage tag {tag}")


def _server_message(reader: _Reader) -> ServerMessage:
    tag = reader.u8("ServerMessage tag")
    if tag == 4:
        return _transaction_update(reader)
    if tag == 6:
        request_id = reader.u32("request_id")
        timestamp = Timestamp(reader.i64("timestamp"))
        outcome_tag = reader.u8("ReducerOutcome tag")
        outcome: ReducerOutcome
        if outcome_tag == 0:
            ret_value = reader.raw("ret_value")
            outcome = ReducerOk(ret_value, _transaction_update(reader))
        elif outcome_tag == 1:
            outcome = ReducerOkEmpty()
        elif outcome_tag == 2:
            outcome = ReducerErr(reader.raw("Err"))
        elif outcome_tag == 3:
            outcome = ReducerInternalError(reader.text("InternalError"))
        else:
            raise DecodeError(f"invalid ReducerOutcome tag {outcome_tag}")
        return ReducerResult(request_id, timestamp, outcome)
    if tag == 0:
        identity = Identity(reader.uint(32, "identity"))
        connection_id = ConnectionId(reader.uint(16, "connection_id"))
        return InitialConnection(identity, connection_id, reader.text("token"))
    if tag == 1:
        request_id = reader.u32("request_id")
        query_set_id = reader.u32("query_set_id")
        return SubscribeApplied(request_id, query_set_id, _query_rows(reader))
    if tag == 2:
        request_id = reader.u32("request_id")
        query_set_id = reader.u32("query_set_id")
        rows = _query_rows(reader) if _option_tag(reader, "UnsubscribeApplied.rows") else None
        return UnsubscribeApplied(request_id, query_set_id, rows)
    if tag == 3:
        maybe_request = reader.u32("request_id") if _option_tag(reader, "SubscriptionError.request_id") else None
        query_set_id = reader.u32("query_set_id")
        return SubscriptionError(maybe_request, query_set_id, reader.text("error"))
    if tag == 5:
        request_id = reader.u32("request_id")
        result_tag = reader.u8("Result tag")
        if result_tag == 0:
            return OneOffQueryResult(request_id, _query_rows(reader))
        if result_tag == 1:
            return OneOffQueryResult(request_id, reader.text("error"))
        raise DecodeError(f"invalid Result tag {result_tag}")
    if tag == 7:
        status_tag = reader.u8("ProcedureStatus tag")
        status: ProcedureStatus
        if status_tag == 0:
            status = ProcedureReturned(reader.raw("Returned"))
        elif status_tag == 1:
            status = ProcedureInternalError(reader.text("InternalError"))
        else:
            raise DecodeError(f"invalid ProcedureStatus tag {status_tag}")
        timestamp = Timestamp(reader.i64("timestamp"))
        duration = TimeDuration(reader.i64("total_host_execution_duration"))
        return ProcedureResult(status, timestamp, duration, reader.u32("request_id"))
    raise DecodeError(f"invalid ServerMessage tag {tag}")


def _as_bytes(data: bytes | bytearray | memoryview) -> bytes:
    return data if isinstance(data, bytes) else bytes(data)


#: `CallReducer`'s fixed head: tag, request id, flags, the reducer name's length.
_CALL_REDUCER_HEAD = struct.Struct("<BIBI")


def decode_client_message_prefix(data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[ClientMessage, int]:
    """Decode one client message at `offset`; returns it and the offset after it (v3 frames hold several).

    A well-formed `CallReducer` (every producer's message) is read in two `unpack_from`s without the general reader
    (docs/performance.md, "Round 5 — percall"); anything else, or anything irregular in one, takes the general path,
    which accepts and refuses exactly as before.
    """
    raw = _as_bytes(data)
    if len(raw) - offset >= 14 and raw[offset] == 3:
        _tag, request_id, flags, name_size = _CALL_REDUCER_HEAD.unpack_from(raw, offset)
        name_at = offset + 10
        args_at = name_at + name_size + 4
        if flags == 0 and args_at <= len(raw):
            (args_size,) = _U32.unpack_from(raw, args_at - 4)
            end = args_at + args_size
            if end <= len(raw):
                try:
                    name = raw[name_at : args_at - 4].decode("utf-8")
                except UnicodeDecodeError:
                    pass  # the general path says why
                else:
                    return CallReducer(request_id, CallReducerFlags.DEFAULT, name, raw[args_at:end]), end
    reader = _Reader(raw, offset)
    return _client_message(reader), reader.pos


def decode_client_message(data: bytes | bytearray | memoryview) -> ClientMessage:
    """Decode exactly one client message occupying all of `data` (a v2 binary frame)."""
    msg, end = decode_client_message_prefix(data)
    if end != len(data):
        raise DecodeError(f"{len(data) - end} trailing bytes after ClientMessage")
    return msg


def decode_server_message_prefix(data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[ServerMessage, int]:
    """Decode one server message at `offset`; returns it and the offset after it (v3 bodies hold several)."""
    reader = _Reader(_as_bytes(data), offset)
    return _server_message(reader), reader.pos


def decode_server_message(data: bytes | bytearray | memoryview) -> ServerMessage:
    """Decode exactly one server message occupying all of `data` (a v2 frame body after decompression)."""
    msg, end = decode_server_message_prefix(data)
    if end != len(data):
        raise DecodeError(f"{len(data) - end} trailing bytes after ServerMessage")
    return msg


def query_rows(tables: Sequence[tuple[str, Sequence[bytes]]]) -> QueryRows:
    """Convenience for the host: build `QueryRows` from (table name, encoded rows) pairs."""
    return QueryRows(tuple(SingleTableRows(name, BsatnRowList.from_rows(rows)) for name, rows in tables))
