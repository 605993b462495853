"""The v1 codec in front of the pure session, and the v1 message shapes: bytes in, frames out, no sockets.

`V1BackendDouble` is a test double of `SessionBackend` (fixed answers, recorded requests, everything durable);
`SchemaDouble` is a test double of `V1Schema` (one table `person`, one reducer `add(u32)`). The end-to-end proof
over real sockets is tests/host/test_v1_protocol.py.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from autopilot_sync.host.call_outcome import CallOutcome, CallStatus
from autopilot_sync.host.procedure_call import ProcedureOutcome, ProcedureStatus
from autopilot_sync.host.session import CloseReason, ServerSession
from autopilot_sync.host.session_v1 import EVENT_TABLE_REFUSAL, LEGACY_QUERY_SETS, V1Codec
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import messages as v2
from autopilot_sync.spacetime import messages_v1 as v1
from autopilot_sync.spacetime.frames import Compression, decode_server_frame
from autopilot_sync.spacetime.rowlist import BsatnRowList
from autopilot_sync.spacetime.values import ConnectionId, Identity, Timestamp

ALICE = Identity(0xA11CE)
CONNECTION = ConnectionId(7)
ROW = (3).to_bytes(4, "little")


@dataclass
class V1BackendDouble:
    """A test double of the session's backend: answers at once from fixed rows, records what it was asked."""

    offset: int = 0
    durable_offset: int = 0
    rows: int = 1
    table: str = "person"
    refuse: set[str] = field(default_factory=set)
    asked: list[v2.ClientMessage] = field(default_factory=list)
    calls: list[Callable[[CallOutcome], None]] = field(default_factory=list)

    def _rows(self) -> v2.QueryRows:
        return v2.QueryRows((v2.SingleTableRows(self.table, BsatnRowList.from_rows([ROW] * self.rows)),))

    def subscribe(self, message: v2.Subscribe) -> v2.SubscribeApplied | v2.SubscriptionError:
        self.asked.append(message)
        if self.refuse & set(message.query_strings):
            return v2.SubscriptionError(message.request_id, message.query_set_id, "no such table")
        return v2.SubscribeApplied(message.request_id, message.query_set_id, self._rows())

    def unsubscribe(self, message: v2.Unsubscribe) -> v2.UnsubscribeApplied | v2.SubscriptionError:
        self.asked.append(message)
        return v2.UnsubscribeApplied(message.request_id, message.query_set_id, self._rows())

    def one_off(self, message: v2.OneOffQuery) -> v2.OneOffQueryResult:
        self.asked.append(message)
        return v2.OneOffQueryResult(message.request_id, self._rows())

    def call_reducer(self, message: v2.CallReducer, on_done: Callable[[CallOutcome], None]) -> None:
        self.asked.append(message)
        self.calls.append(on_done)

    def call_procedure(self, message: v2.CallProcedure, on_done: Callable[[ProcedureOutcome], None]) -> None:
        self.asked.append(message)
        if message.procedure == "echo":  # returns its arguments' bytes
            on_done(ProcedureOutcome(Timestamp(1_000), ProcedureStatus.RETURNED, returned=message.args))
        else:
            on_done(ProcedureOutcome(Timestamp(1_000), error=f"no such procedure: {message.procedure}"))


class SchemaDouble:
    """A test double of `V1Schema`: table `person` (id 4096, rows are one u32), reducer `add(n: u32)` (id 0)."""

    def table_id(self, table: str) -> int:
        return 4096 if table == "person" else 0

    def row_json(self, table: str, row: bytes) -> str:
        return json.dumps([int.from_bytes(row, "little")])

    def reducer_id(self, reducer: str) -> int:
        return 0 if reducer == "add" else v1.NO_REDUCER_ID

    def reducer_params(self, reducer: str) -> at.ProductType | None:
        return at.product(("n", at.U32)) if reducer == "add" else None

    def is_event_table(self, table: str) -> bool:
        return table == "ping"


def _session(fmt: v1.V1Format, backend: V1BackendDouble, compression: Compression = Compression.NONE) -> ServerSession:
    codec = V1Codec(fmt, SchemaDouble(), ALICE, CONNECTION)
    return ServerSession(
        backend, version=1, compression=compression, identity=ALICE, connection_id=CONNECTION, codec=codec
    )


def _feed(session: ServerSession, fmt: v1.V1Format, message: v1.ClientMessage) -> None:
    data = v1.encode_client_message(fmt, message)
    if isinstance(data, str):
        session.receive_text(data)
    else:
        session.receive_binary(data)


def _sent(session: ServerSession, fmt: v1.V1Format) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for frame in session.data_to_send():
        body = decode_server_frame(frame) if fmt is v1.V1Format.BSATN else frame
        ((name, fields),) = v1.decode_server_message(fmt, body).items()
        out.append((name, fields))
    return out


FORMATS = pytest.mark.parametrize("fmt", [v1.V1Format.BSATN, v1.V1Format.JSON], ids=lambda f: f.value)


@FORMATS
def test_legacy_subscribe_replaces_the_previous_one_only_once_the_new_one_is_applied(fmt: v1.V1Format) -> None:
    backend = V1BackendDouble(refuse={"SELECT * FROM nope"})
    session = _session(fmt, backend)
    _feed(session, fmt, v1.Subscribe(("SELECT * FROM person",), 1))
    _feed(session, fmt, v1.Subscribe(("SELECT * FROM nope",), 2))
    assert session.query_sets == {LEGACY_QUERY_SETS}  # the refused one replaced nothing
    _feed(session, fmt, v1.Subscribe(("SELECT * FROM person",), 3))
    assert session.query_sets == {LEGACY_QUERY_SETS + 2}
    assert isinstance(backend.asked[-1], v2.Unsubscribe) and backend.asked[-1].query_set_id == LEGACY_QUERY_SETS
    sent = _sent(session, fmt)
    assert [name for name, _ in sent] == ["InitialSubscription", "TransactionUpdate", "InitialSubscription"]
    assert sent[0][1]["request_id"] == 1 and sent[2][1]["request_id"] == 3
    assert sent[1][1]["status"] == {"Failed": "no such table"}
    assert sent[1][1]["reducer_call"]["reducer_id"] == v1.NO_REDUCER_ID


@FORMATS
def test_a_query_id_in_use_is_reported_and_the_socket_stays_open(fmt: v1.V1Format) -> None:
    session = _session(fmt, V1BackendDouble())
    _feed(session, fmt, v1.SubscribeSingle("SELECT * FROM person", 1, 5))
    _feed(session, fmt, v1.SubscribeMulti(("SELECT * FROM person",), 2, 5))
    (applied, failed) = _sent(session, fmt)
    assert applied[0] == "SubscribeApplied" and applied[1]["rows"]["table_id"] == 4096
    assert failed[0] == "TransactionUpdate"
    assert failed[1]["status"]["Failed"].startswith("Subscription with id QuerySetId { id: 5 } already exists")
    assert session.close_request is None


@FORMATS
def test_no_success_notify_hides_a_success_that_changed_none_of_the_callers_rows(fmt: v1.V1Format) -> None:
    backend = V1BackendDouble()
    session = _session(fmt, backend)
    args: bytes | str = (5).to_bytes(4, "little") if fmt is v1.V1Format.BSATN else "[5]"
    _feed(session, fmt, v1.CallReducer("add", args, 9, v1.CallReducerFlags.NO_SUCCESS_NOTIFY))
    _feed(session, fmt, v1.CallReducer("add", args, 10, v1.CallReducerFlags.NO_SUCCESS_NOTIFY))
    first, second = backend.calls
    first(CallOutcome(CallStatus.COMMITTED, Timestamp(1), ""))
    second(CallOutcome(CallStatus.USER_ERROR, Timestamp(2), "too big"))
    (failed,) = _sent(session, fmt)
    assert failed[0] == "TransactionUpdate" and failed[1]["status"] == {"Failed": "too big"}
    assert failed[1]["reducer_call"]["request_id"] == 10 and failed[1]["reducer_call"]["reducer_name"] == "add"


@FORMATS
def test_a_v1_subscription_to_an_event_table_is_refused_and_taken_back(fmt: v1.V1Format) -> None:
    backend = V1BackendDouble(rows=0, table="ping")
    session = _session(fmt, backend)
    _feed(session, fmt, v1.SubscribeMulti(("SELECT * FROM ping",), 1, 2))
    ((name, error),) = _sent(session, fmt)
    assert name == "SubscriptionError" and error["error"] == EVENT_TABLE_REFUSAL
    assert error["request_id"] == {"some": 1} and error["query_id"] == {"some": 2}
    assert session.query_sets == set() and isinstance(backend.asked[-1], v2.Unsubscribe)


def test_json_arguments_are_checked_against_the_reducer_before_it_runs() -> None:
    fmt = v1.V1Format.JSON
    backend = V1BackendDouble()
    session = _session(fmt, backend)
    _feed(session, fmt, v1.CallReducer("add", '["five"]', 4))
    _feed(session, fmt, v1.CallReducer("add", '{"n": 5}', 5))
    ((name, failed),) = _sent(session, fmt)
    assert name == "TransactionUpdate" and failed["reducer_call"]["request_id"] == 0
    assert failed["status"]["Failed"].startswith("invalid arguments for reducer add: at $[0]")
    (call,) = [m for m in backend.asked if isinstance(m, v2.CallReducer)]
    assert call.args == (5).to_bytes(4, "little")  # JSON arguments reach the engine as BSATN


def test_a_v1_bsatn_procedure_call_passes_its_arguments_and_returns_its_value() -> None:
    fmt = v1.V1Format.BSATN
    backend = V1BackendDouble()
    session = _session(fmt, backend)
    _feed(session, fmt, v1.CallProcedure("echo", b"\x07\x00\x00\x00", 9))
    _feed(session, fmt, v1.CallProcedure("missing", b"", 10))
    (returned, failed) = _sent(session, fmt)
    assert returned[0] == "ProcedureResult" and returned[1]["status"] == {"Returned": "07000000"}  # bytes as hex
    assert returned[1]["request_id"] == 9
    assert failed[1]["status"] == {"InternalError": "no such procedure: missing"} and failed[1]["request_id"] == 10


def test_a_v1_json_procedure_call_is_refused_with_a_clear_text() -> None:
    fmt = v1.V1Format.JSON
    backend = V1BackendDouble()
    session = _session(fmt, backend)
    _feed(session, fmt, v1.CallProcedure("echo", "[7]", 3))
    ((name, fields),) = _sent(session, fmt)
    assert name == "ProcedureResult" and fields["request_id"] == 3
    assert fields["status"] == {"InternalError": "procedures are served over v1.bsatn, v2 and v3, not v1.json"}
    assert not [m for m in backend.asked if isinstance(m, v2.CallProcedure)]


def test_json_goes_out_as_text_and_bsatn_as_tagged_frames_compressed_over_1_kib() -> None:
    text = _session(v1.V1Format.JSON, V1BackendDouble(rows=400), Compression.GZIP)
    text.send(v2.InitialConnection(ALICE, CONNECTION, "tok"))
    _feed(text, v1.V1Format.JSON, v1.OneOffQuery(b"\x01", "SELECT * FROM person"))
    hello, rows = text.data_to_send()
    assert json.loads(hello) == {
        "IdentityToken": {
            "identity": {"__identity__": hex(ALICE.value)},  # ethnum: minimal digits
            "token": "tok",
            "connection_id": {"__connection_id__": 7},
        }
    }
    assert json.loads(rows)["OneOffQueryResponse"]["tables"][0]["rows"][:2] == ["[3]", "[3]"]  # never compressed
    binary = _session(v1.V1Format.BSATN, V1BackendDouble(rows=400), Compression.GZIP)
    binary.send(v2.InitialConnection(ALICE, CONNECTION, "tok"))
    _feed(binary, v1.V1Format.BSATN, v1.OneOffQuery(b"\x01", "SELECT * FROM person"))
    small, large = binary.data_to_send()
    assert small[0] == 0 and large[0] == 2
    body = gzip.decompress(large[1:])
    assert v1.decode_server_message(v1.V1Format.BSATN, body)["OneOffQueryResponse"]["message_id"] == "01"


def test_identity_token_bsatn_is_the_v1_layout() -> None:
    body = v1.encode_server_message(v1.V1Format.BSATN, v1.identity_token(ALICE, "tok", CONNECTION))
    # tag 3, identity (u256 LE), token (u32 length + UTF-8), connection id (u128 LE): v1.rs `IdentityToken`
    expected = b"\x03" + ALICE.value.to_bytes(32, "little") + b"\x03\x00\x00\x00tok" + (7).to_bytes(16, "little")
    assert body == expected


@FORMATS
@pytest.mark.parametrize(
    "message",
    [
        v1.CallReducer("add", b"\x05\x00\x00\x00", 1, v1.CallReducerFlags.NO_SUCCESS_NOTIFY),
        v1.Subscribe(("SELECT * FROM a", "SELECT * FROM b"), 2),
        v1.OneOffQuery(b"\x00\xff", "SELECT * FROM a"),
        v1.SubscribeSingle("SELECT * FROM a", 3, 4),
        v1.SubscribeMulti(("SELECT * FROM a",), 5, 6),
        v1.Unsubscribe(7, 8),
        v1.UnsubscribeMulti(9, 10),
        v1.CallProcedure("p", b"", 11),
    ],
    ids=lambda m: type(m).__name__,
)
def test_client_messages_round_trip_in_both_formats(fmt: v1.V1Format, message: v1.ClientMessage) -> None:
    if fmt is v1.V1Format.JSON and isinstance(message, v1.CallReducer | v1.CallProcedure):
        message = type(message)(*(("[5]" if isinstance(a, bytes) else a) for a in _fields(message)))
    data = v1.encode_client_message(fmt, message)
    decoded = v1.decode_client_text(data) if isinstance(data, str) else v1.decode_client_binary(data)
    assert decoded == message


def _fields(message: v1.CallReducer | v1.CallProcedure) -> list[Any]:
    return [getattr(message, name) for name in message.__dataclass_fields__]


@pytest.mark.parametrize(
    "frame",
    [b"", b"\x08", b"\x00\x01\x00\x00\x00a\x00\x00\x00\x00\x00\x00\x00\x00\x02", "[]", '{"CallReducer": 1}'],
)
def test_undecodable_frames_close_with_1011(frame: bytes | str) -> None:
    session = _session(v1.V1Format.JSON, V1BackendDouble())
    if isinstance(frame, str):
        session.receive_text(frame)
    else:
        session.receive_binary(frame)
    assert session.close_request is not None and session.close_request.reason is CloseReason.DECODE_ERROR
