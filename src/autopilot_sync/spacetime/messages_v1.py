"""The SpacetimeDB v1 WebSocket messages (`crates/client-api-messages/src/websocket/v1.rs`), BSATN and SATS-JSON.

SpacetimeDB 2.x still serves `v1.bsatn.spacetimedb` and `v1.json.spacetimedb` beside v2/v3 (`select_protocol` in
`crates/client-api/src/routes/subscribe.rs`). The v1 messages are generic over a format: BSATN carries rows as a
`BsatnRowList` and reducer arguments as bytes; JSON carries each row and the arguments as a string holding JSON
(`JsonFormat`: `Single = ByteString`, `List = Vec<ByteString>`), so the shapes here are built per format
(`client_message_type`, `server_message_type`) in the Rust declaration order, which is the wire order.

v1 is a compatibility protocol (older SDKs, shells and browsers speaking JSON), far off the hot path, so its values
go through the generic codecs (`bsatn`, `sats_json`) instead of the hand-written ones `messages.py` uses for v2.
Client messages decode to the typed dataclasses below; server messages are algebraic values made by the builder
functions below (`identity_token`, `transaction_update`, ...) and encoded by `encode_server_message`.

Decoding untrusted input raises only `DecodeError` (bad BSATN, JSON that does not fit, a bad flag).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime.errors import DecodeError
from autopilot_sync.spacetime.rowlist import BsatnRowList, FixedSize
from autopilot_sync.spacetime.sats_json import SatsJsonError, from_json, loads, to_json
from autopilot_sync.spacetime.v1_subprotocols import V1_BSATN_PROTOCOL, V1_JSON_PROTOCOL
from autopilot_sync.spacetime.values import ConnectionId, Identity, SumValue, TimeDuration, Timestamp

#: `reducer_id` of a failure that names no reducer the module has (SpacetimeDB's `u32::MAX` in
#: `MessageExecutionError::into_event`).
NO_REDUCER_ID = 0xFFFF_FFFF


class V1Format(enum.Enum):
    """How rows and arguments travel: BSATN (binary frames) or SATS-JSON (text frames)."""

    BSATN = "bsatn"
    JSON = "json"

    @property
    def protocol(self) -> str:
        """The subprotocol name that selects this format."""
        return V1_BSATN_PROTOCOL if self is V1Format.BSATN else V1_JSON_PROTOCOL


class CallReducerFlags(enum.IntEnum):
    """v1 `CallReducerFlags` (a u8): 1 asks not to be told of a success unless subscribed rows changed."""

    FULL_UPDATE = 0
    NO_SUCCESS_NOTIFY = 1


# ----- client → server -----


@dataclass(frozen=True, slots=True)
class CallReducer:
    """Tag 0: run a reducer; `args` is BSATN (bytes) or JSON text (a string holding a JSON array or object)."""

    reducer: str
    args: bytes | str
    request_id: int
    flags: CallReducerFlags = CallReducerFlags.FULL_UPDATE


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Tag 1: the legacy subscription: replaces every query this message set before; answered by
    `InitialSubscription`."""

    query_strings: tuple[str, ...]
    request_id: int


@dataclass(frozen=True, slots=True)
class OneOffQuery:
    """Tag 2: one query, answered by `OneOffQueryResponse` carrying the same `message_id`."""

    message_id: bytes
    query_string: str


@dataclass(frozen=True, slots=True)
class SubscribeSingle:
    """Tag 3: subscribe one query under a client-chosen `query_id`; answered by `SubscribeApplied`."""

    query: str
    request_id: int
    query_id: int


@dataclass(frozen=True, slots=True)
class SubscribeMulti:
    """Tag 4: subscribe several queries under one `query_id`; answered by `SubscribeMultiApplied`."""

    query_strings: tuple[str, ...]
    request_id: int
    query_id: int


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Tag 5: end a `SubscribeSingle`; answered by `UnsubscribeApplied` with the rows to drop."""

    request_id: int
    query_id: int


@dataclass(frozen=True, slots=True)
class UnsubscribeMulti:
    """Tag 6: end a `SubscribeMulti`; answered by `UnsubscribeMultiApplied` with the rows to drop."""

    request_id: int
    query_id: int


@dataclass(frozen=True, slots=True)
class CallProcedure:
    """Tag 7: run a procedure (served over v1.bsatn, whose `args` are BSATN; refused over v1.json)."""

    procedure: str
    args: bytes | str
    request_id: int


ClientMessage = (
    CallReducer
    | Subscribe
    | OneOffQuery
    | SubscribeSingle
    | SubscribeMulti
    | Unsubscribe
    | UnsubscribeMulti
    | CallProcedure
)

_QUERY_ID = at.product(("id", at.U32))


@cache
def client_message_type(fmt: V1Format) -> at.SumType:
    """`v1::ClientMessage<Args>` where `Args` is bytes (BSATN) or a string (JSON), as the real host decodes it."""
    args = at.BYTES if fmt is V1Format.BSATN else at.STRING
    return at.sum_type(
        (
            "CallReducer",
            at.product(("reducer", at.STRING), ("args", args), ("request_id", at.U32), ("flags", at.U8)),
        ),
        ("Subscribe", at.product(("query_strings", at.array(at.STRING)), ("request_id", at.U32))),
        ("OneOffQuery", at.product(("message_id", at.BYTES), ("query_string", at.STRING))),
        ("SubscribeSingle", at.product(("query", at.STRING), ("request_id", at.U32), ("query_id", _QUERY_ID))),
        (
            "SubscribeMulti",
            at.product(("query_strings", at.array(at.STRING)), ("request_id", at.U32), ("query_id", _QUERY_ID)),
        ),
        ("Unsubscribe", at.product(("request_id", at.U32), ("query_id", _QUERY_ID))),
        ("UnsubscribeMulti", at.product(("request_id", at.U32), ("query_id", _QUERY_ID))),
        (
            "CallProcedure",
            at.product(("procedure", at.STRING), ("args", args), ("request_id", at.U32), ("flags", at.U8)),
        ),
    )


def decode_client_binary(data: bytes) -> ClientMessage:
    """A binary frame: one BSATN `ClientMessage` (the real host accepts one on either v1 protocol)."""
    return _client_message(bsatn.decode(client_message_type(V1Format.BSATN), data))


def decode_client_text(text: str) -> ClientMessage:
    """A text frame: one SATS-JSON `ClientMessage` (the real host accepts one on either v1 protocol)."""
    try:
        value = from_json(client_message_type(V1Format.JSON), loads(text))
    except SatsJsonError as exc:
        raise DecodeError(f"invalid v1 JSON message: {exc}") from None
    return _client_message(value)


def _client_message(value: SumValue) -> ClientMessage:
    tag, fields = value.tag, value.value
    if tag == 0:
        reducer, args, request_id, flags = fields
        if flags > 1:
            raise DecodeError(f"invalid call reducer flag {flags}")
        return CallReducer(reducer, args, request_id, CallReducerFlags(flags))
    if tag == 1:
        return Subscribe(tuple(fields[0]), fields[1])
    if tag == 2:
        return OneOffQuery(bytes(fields[0]), fields[1])
    if tag == 3:
        return SubscribeSingle(fields[0], fields[1], fields[2][0])
    if tag == 4:
        return SubscribeMulti(tuple(fields[0]), fields[1], fields[2][0])
    if tag == 5:
        return Unsubscribe(fields[0], fields[1][0])
    if tag == 6:
        return UnsubscribeMulti(fields[0], fields[1][0])
    procedure, args, request_id, flags = fields
    if flags != 0:
        raise DecodeError(f"invalid call procedure flag {flags}")
    return CallProcedure(procedure, args, request_id)


def encode_client_message(fmt: V1Format, message: ClientMessage) -> bytes | str:
    """A client message as a v1 client sends it (BSATN bytes or JSON text); the test clients and docs use it."""
    value = _client_value(message)
    ty = client_message_type(fmt)
    if fmt is V1Format.BSATN:
        return bsatn.encode(ty, value)
    return _dumps(to_json(ty, value))


def _client_value(message: ClientMessage) -> SumValue:
    if isinstance(message, CallReducer):
        return SumValue(0, (message.reducer, message.args, message.request_id, int(message.flags)))
    if isinstance(message, Subscribe):
        return SumValue(1, (list(message.query_strings), message.request_id))
    if isinstance(message, OneOffQuery):
        return SumValue(2, (message.message_id, message.query_string))
    if isinstance(message, SubscribeSingle):
        return SumValue(3, (message.query, message.request_id, (message.query_id,)))
    if isinstance(message, SubscribeMulti):
        return SumValue(4, (list(message.query_strings), message.request_id, (message.query_id,)))
    if isinstance(message, Unsubscribe):
        return SumValue(5, (message.request_id, (message.query_id,)))
    if isinstance(message, UnsubscribeMulti):
        return SumValue(6, (message.request_id, (message.query_id,)))
    return SumValue(7, (message.procedure, message.args, message.request_id, 0))


# ----- server → client -----


@cache
def server_message_type(fmt: V1Format) -> at.SumType:
    """`v1::ServerMessage<F>` for `BsatnFormat` or `JsonFormat`, field by field."""
    if fmt is V1Format.BSATN:
        single: at.AlgebraicType = at.BYTES
        row_list: at.AlgebraicType = at.product(
            ("size_hint", at.sum_type(("FixedSize", at.U16), ("RowOffsets", at.array(at.U64)))),
            ("rows_data", at.BYTES),
        )
    else:
        single = at.STRING
        row_list = at.array(at.STRING)
    query_update: at.AlgebraicType = at.product(("deletes", row_list), ("inserts", row_list))
    if fmt is V1Format.BSATN:
        # `CompressableQueryUpdate`: the real host always sends `Uncompressed` (it compresses whole frames).
        query_update = at.sum_type(("Uncompressed", query_update), ("Brotli", at.BYTES), ("Gzip", at.BYTES))
    table_update = at.product(
        ("table_id", at.U32), ("table_name", at.STRING), ("num_rows", at.U64), ("updates", at.array(query_update))
    )
    database_update = at.product(("tables", at.array(table_update)))
    subscribe_rows = at.product(("table_id", at.U32), ("table_name", at.STRING), ("table_rows", table_update))
    applied = at.product(
        ("request_id", at.U32),
        ("total_host_execution_duration_micros", at.U64),
        ("query_id", _QUERY_ID),
        ("rows", subscribe_rows),
    )
    multi_applied = at.product(
        ("request_id", at.U32),
        ("total_host_execution_duration_micros", at.U64),
        ("query_id", _QUERY_ID),
        ("update", database_update),
    )
    return at.sum_type(
        (
            "InitialSubscription",
            at.product(
                ("database_update", database_update),
                ("request_id", at.U32),
                ("total_host_execution_duration", at.TIME_DURATION),
            ),
        ),
        (
            "TransactionUpdate",
            at.product(
                (
                    "status",
                    at.sum_type(("Committed", database_update), ("Failed", at.STRING), ("OutOfEnergy", at.UNIT)),
                ),
                ("timestamp", at.TIMESTAMP),
                ("caller_identity", at.IDENTITY),
                ("caller_connection_id", at.CONNECTION_ID),
                (
                    "reducer_call",
                    at.product(
                        ("reducer_name", at.STRING),
                        ("reducer_id", at.U32),
                        ("args", single),
                        ("request_id", at.U32),
                    ),
                ),
                ("energy_quanta_used", at.product(("quanta", at.U128))),
                ("total_host_execution_duration", at.TIME_DURATION),
            ),
        ),
        ("TransactionUpdateLight", at.product(("request_id", at.U32), ("update", database_update))),
        (
            "IdentityToken",
            at.product(("identity", at.IDENTITY), ("token", at.STRING), ("connection_id", at.CONNECTION_ID)),
        ),
        (
            "OneOffQueryResponse",
            at.product(
                ("message_id", at.BYTES),
                ("error", at.option(at.STRING)),
                ("tables", at.array(at.product(("table_name", at.STRING), ("rows", row_list)))),
                ("total_host_execution_duration", at.TIME_DURATION),
            ),
        ),
        ("SubscribeApplied", applied),
        ("UnsubscribeApplied", applied),
        (
            "SubscriptionError",
            at.product(
                ("total_host_execution_duration_micros", at.U64),
                ("request_id", at.option(at.U32)),
                ("query_id", at.option(at.U32)),
                ("table_id", at.option(at.U32)),
                ("error", at.STRING),
            ),
        ),
        ("SubscribeMultiApplied", multi_applied),
        ("UnsubscribeMultiApplied", multi_applied),
        (
            "ProcedureResult",
            at.product(
                (
                    "status",
                    at.sum_type(("Returned", single), ("OutOfEnergy", at.UNIT), ("InternalError", at.STRING)),
                ),
                ("timestamp", at.TIMESTAMP),
                ("total_host_execution_duration", at.TIME_DURATION),
                ("request_id", at.U32),
            ),
        ),
    )


class ServerTag(enum.IntEnum):
    """The variants of `v1::ServerMessage`, in declaration order."""

    INITIAL_SUBSCRIPTION = 0
    TRANSACTION_UPDATE = 1
    TRANSACTION_UPDATE_LIGHT = 2
    IDENTITY_TOKEN = 3
    ONE_OFF_QUERY_RESPONSE = 4
    SUBSCRIBE_APPLIED = 5
    UNSUBSCRIBE_APPLIED = 6
    SUBSCRIPTION_ERROR = 7
    SUBSCRIBE_MULTI_APPLIED = 8
    UNSUBSCRIBE_MULTI_APPLIED = 9
    PROCEDURE_RESULT = 10


#: Rows of one table in the wire format: a `BsatnRowList` value (BSATN) or JSON row texts (JSON).
RowsValue = Any


def bsatn_rows(rows: BsatnRowList) -> RowsValue:
    """A `BsatnRowList` as the generic value of the BSATN format's `List`."""
    hint = rows.size_hint
    size_hint = SumValue(0, hint.size) if isinstance(hint, FixedSize) else SumValue(1, list(hint.offsets))
    return (size_hint, rows.rows_data)


@dataclass(frozen=True, slots=True)
class TableRows:
    """One table's part of an update: its id and name, and one (deletes, inserts) pair per query that matched."""

    table_id: int
    table_name: str
    updates: tuple[tuple[RowsValue, RowsValue, int], ...]  # (deletes, inserts, number of rows in both)


def _table_update(fmt: V1Format, table: TableRows) -> tuple[Any, ...]:
    updates = [
        SumValue(0, (deletes, inserts)) if fmt is V1Format.BSATN else (deletes, inserts)
        for deletes, inserts, _ in table.updates
    ]
    return (table.table_id, table.table_name, sum(n for _, _, n in table.updates), updates)


def _database_update(fmt: V1Format, tables: Sequence[TableRows]) -> tuple[Any, ...]:
    return ([_table_update(fmt, table) for table in tables],)


def identity_token(identity: Identity, token: str, connection_id: ConnectionId) -> SumValue:
    """`IdentityToken`: the first message on every v1 connection."""
    return SumValue(ServerTag.IDENTITY_TOKEN, (identity, token, connection_id))


def initial_subscription(fmt: V1Format, tables: Sequence[TableRows], request_id: int) -> SumValue:
    """`InitialSubscription`: the rows of a legacy `Subscribe` (as inserts)."""
    return SumValue(ServerTag.INITIAL_SUBSCRIPTION, (_database_update(fmt, tables), request_id, TimeDuration(0)))


def subscribe_applied(
    fmt: V1Format, request_id: int, query_id: int, table: TableRows, *, unsubscribe: bool
) -> SumValue:
    """`SubscribeApplied` (rows as inserts) or `UnsubscribeApplied` (rows as deletes) of a single query."""
    tag = ServerTag.UNSUBSCRIBE_APPLIED if unsubscribe else ServerTag.SUBSCRIBE_APPLIED
    rows = (table.table_id, table.table_name, _table_update(fmt, table))
    return SumValue(tag, (request_id, 0, (query_id,), rows))


def multi_applied(
    fmt: V1Format, request_id: int, query_id: int, tables: Sequence[TableRows], *, unsubscribe: bool
) -> SumValue:
    """`SubscribeMultiApplied` (rows as inserts) or `UnsubscribeMultiApplied` (rows as deletes)."""
    tag = ServerTag.UNSUBSCRIBE_MULTI_APPLIED if unsubscribe else ServerTag.SUBSCRIBE_MULTI_APPLIED
    return SumValue(tag, (request_id, 0, (query_id,), _database_update(fmt, tables)))


def subscription_error(request_id: int | None, query_id: int | None, error: str) -> SumValue:
    """`SubscriptionError`; `table_id` is left unset (the real host sets it only in tests)."""
    return SumValue(ServerTag.SUBSCRIPTION_ERROR, (0, request_id, query_id, None, error))


@dataclass(frozen=True, slots=True)
class ReducerCall:
    """What a `TransactionUpdate` says about the call that made it (`ReducerCallInfo` and the caller)."""

    reducer_name: str
    reducer_id: int
    args: bytes | str
    request_id: int
    caller_identity: Identity
    caller_connection_id: ConnectionId


def transaction_update(
    fmt: V1Format, call: ReducerCall, timestamp: Timestamp, status: Sequence[TableRows] | str
) -> SumValue:
    """`TransactionUpdate` to a caller: `Committed(its updates)` or `Failed(message)`; no energy is metered."""
    update_status = SumValue(0, _database_update(fmt, status)) if not isinstance(status, str) else SumValue(1, status)
    reducer_call = (call.reducer_name, call.reducer_id, call.args, call.request_id)
    return SumValue(
        ServerTag.TRANSACTION_UPDATE,
        (
            update_status,
            timestamp,
            call.caller_identity,
            call.caller_connection_id,
            reducer_call,
            (0,),
            TimeDuration(0),
        ),
    )


def transaction_update_light(fmt: V1Format, request_id: int, tables: Sequence[TableRows]) -> SumValue:
    """`TransactionUpdateLight`: the rows a transaction changed, without who called what."""
    return SumValue(ServerTag.TRANSACTION_UPDATE_LIGHT, (request_id, _database_update(fmt, tables)))


def one_off_query_response(message_id: bytes, result: Sequence[tuple[str, RowsValue]] | str) -> SumValue:
    """`OneOffQueryResponse`: the tables' rows, or the error (then no tables)."""
    if isinstance(result, str):
        return SumValue(ServerTag.ONE_OFF_QUERY_RESPONSE, (message_id, result, [], TimeDuration(0)))
    return SumValue(ServerTag.ONE_OFF_QUERY_RESPONSE, (message_id, None, list(result), TimeDuration(0)))


def procedure_returned(value: bytes, timestamp: Timestamp, duration: TimeDuration, request_id: int) -> SumValue:
    """`ProcedureResult(Returned)`: the value's BSATN (v1.bsatn only)."""
    return SumValue(ServerTag.PROCEDURE_RESULT, (SumValue(0, value), timestamp, duration, request_id))


def procedure_internal_error(message: str, timestamp: Timestamp, request_id: int) -> SumValue:
    """`ProcedureResult(InternalError)`."""
    return SumValue(ServerTag.PROCEDURE_RESULT, (SumValue(2, message), timestamp, TimeDuration(0), request_id))


def encode_server_message(fmt: V1Format, message: SumValue) -> bytes:
    """The bytes of a server message: the BSATN body (the frame adds the compression tag) or UTF-8 JSON text."""
    ty = server_message_type(fmt)
    if fmt is V1Format.BSATN:
        return bsatn.encode(ty, message)
    return _dumps(to_json(ty, message)).encode("utf-8")


def decode_server_message(fmt: V1Format, data: bytes | str) -> dict[str, Any]:
    """A server message as its SATS-JSON object (`{"IdentityToken": {...}}`), whichever format it came in.

    For clients and tests: a BSATN message is decoded and shown in the JSON form of the BSATN shapes (row lists as
    `{"size_hint": ..., "rows_data": "<hex>"}`), so both formats are read the same way.
    """
    ty = server_message_type(fmt)
    if fmt is V1Format.BSATN:
        if isinstance(data, str):
            raise DecodeError("a v1.bsatn server message is binary")
        value = to_json(ty, bsatn.decode(ty, data))
    else:
        value = json.loads(data)
    if not isinstance(value, dict) or len(value) != 1:
        raise DecodeError("a server message is an object with one variant")
    return value


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
