"""The server session as a pure state machine: bytes in, frames and close requests out, no sockets, no event loop.

`BackendDouble` is a test double of `SessionBackend` (the engine and subscription engine behind the adapter): it
records what the session asked of it, answers from fixed tables, and lets the test move the durable offset by hand,
so "answered before durability" is a state the test sets, not a race.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autopilot_sync.host.call_outcome import CallOutcome, CallStatus
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.procedure_call import ProcedureOutcome
from autopilot_sync.host.session import EMPTY_V3_FRAME, CloseReason, SendBounds, ServerSession
from autopilot_sync.host.transaction import CommittedTx, TableChange
from autopilot_sync.spacetime.frames import Compression, EncodedMessage, split_server_body
from autopilot_sync.spacetime.messages import (
    CallProcedure,
    CallProcedureFlags,
    CallReducer,
    CallReducerFlags,
    ClientMessage,
    OneOffQuery,
    OneOffQueryResult,
    ProcedureResult,
    QueryRows,
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
    encode_client_message,
)
from autopilot_sync.spacetime.values import ConnectionId, Identity, Timestamp

ALICE = Identity(1)
CONNECTION = ConnectionId(7)
NO_ROWS = QueryRows(())


@dataclass
class BackendDouble:
    """A test double of the session's backend: fixed answers, a hand-moved durable offset, recorded calls."""

    offset: int = 0
    durable_offset: int = 0
    refuse_subscribe: str | None = None
    calls: list[tuple[CallReducer, Callable[[CallOutcome], None]]] = field(default_factory=list)
    asked: list[ClientMessage] = field(default_factory=list)

    def subscribe(self, message: Subscribe) -> SubscribeApplied | SubscriptionError:
        self.asked.append(message)
        if self.refuse_subscribe is not None:
            return SubscriptionError(message.request_id, message.query_set_id, self.refuse_subscribe)
        return SubscribeApplied(message.request_id, message.query_set_id, NO_ROWS)

    def unsubscribe(self, message: Unsubscribe) -> UnsubscribeApplied | SubscriptionError:
        self.asked.append(message)
        return UnsubscribeApplied(message.request_id, message.query_set_id, None)

    def one_off(self, message: OneOffQuery) -> OneOffQueryResult:
        self.asked.append(message)
        return OneOffQueryResult(message.request_id, NO_ROWS)

    def call_reducer(self, message: CallReducer, on_done: Callable[[CallOutcome], None]) -> None:
        self.asked.append(message)
        self.calls.append((message, on_done))

    def call_procedure(self, message: CallProcedure, on_done: Callable[[ProcedureOutcome], None]) -> None:
        self.asked.append(message)
        on_done(ProcedureOutcome(Timestamp(1_000), error=f"no such procedure: {message.procedure}"))


def _session(backend: BackendDouble, version: int = 3, bounds: SendBounds | None = None) -> ServerSession:
    return ServerSession(
        backend, version=version, compression=Compression.NONE, identity=ALICE, connection_id=CONNECTION, bounds=bounds
    )


def _frame(*messages: ClientMessage) -> bytes:
    """One v3 client frame holding `messages` back to back."""
    return b"".join(encode_client_message(m) for m in messages)


def _sent(session: ServerSession) -> list[ServerMessage]:
    """Every server message in the frames the session has ready (uncompressed frames: tag byte 0, then bodies)."""
    messages: list[ServerMessage] = []
    for frame in session.data_to_send():
        assert frame[0] == 0
        messages.extend(split_server_body(frame[1:]))
    return messages


def _call(request_id: int, reducer: str = "append") -> CallReducer:
    return CallReducer(request_id, CallReducerFlags.DEFAULT, reducer, b"")


def _outcome(status: CallStatus, offset: int, message: str = "", tx: CommittedTx | None = None) -> CallOutcome:
    return CallOutcome(status, Timestamp(1_000), message, tx=tx, offset=offset)


def test_answers_wait_for_durability_and_leave_in_request_order() -> None:
    backend = BackendDouble(offset=5, durable_offset=3)
    session = _session(backend)
    session.receive_binary(_frame(Subscribe(1, 10, ("SELECT * FROM t",)), OneOffQuery(2, "SELECT * FROM t")))
    assert _sent(session) == [] and session.holding
    session.release(4)
    assert _sent(session) == []
    backend.durable_offset = 5
    session.release(5)
    assert _sent(session) == [SubscribeApplied(1, 10, NO_ROWS), OneOffQueryResult(2, NO_ROWS)]
    assert not session.holding


def test_an_update_skips_the_queue_only_when_nothing_waits_ahead_of_it_and_it_fits_the_bounds() -> None:
    backend = BackendDouble(offset=5, durable_offset=4)
    session = _session(backend)
    update = EncodedMessage.of(OneOffQueryResult(9, NO_ROWS))
    assert session.alone_frame(update) == update.frame(Compression.NONE)
    session.receive_binary(_frame(OneOffQuery(1, "SELECT * FROM t")))  # held until offset 5 is durable
    assert session.holding and session.alone_frame(update) is None
    session.release(5)
    assert session.wants_write and session.alone_frame(update) is None  # the answer leaves first
    assert _sent(session) == [OneOffQueryResult(1, NO_ROWS)]
    assert session.alone_frame(update) is not None
    assert _session(backend, bounds=SendBounds(max_bytes=len(update) - 1)).alone_frame(update) is None
    session.close(CloseReason.SEND_QUEUE_FULL)
    assert session.alone_frame(update) is None


def test_an_answer_that_depends_on_no_state_still_waits_behind_an_earlier_held_one() -> None:
    backend = BackendDouble(offset=5, durable_offset=4)
    session = _session(backend)
    procedure = CallProcedure(3, CallProcedureFlags.DEFAULT, "p", b"")
    session.receive_binary(_frame(OneOffQuery(1, "SELECT * FROM t"), procedure))
    assert _sent(session) == []
    session.release(5)
    sent = _sent(session)
    assert [type(m) for m in sent] == [OneOffQueryResult, ProcedureResult]


def test_a_reducer_that_wrote_nothing_is_answered_only_after_the_commits_it_saw_are_durable() -> None:
    backend = BackendDouble(offset=8, durable_offset=6)
    session = _session(backend)
    session.receive_binary(_frame(_call(1)))
    ((_message, done),) = backend.calls
    done(_outcome(CallStatus.COMMITTED, offset=8))  # a duplicate append: no transaction, but it saw offset 8
    assert _sent(session) == []
    session.release(8)
    assert _sent(session) == [ReducerResult(1, Timestamp(1_000), ReducerOk(b"", TransactionUpdate(())))]


def test_a_reducer_that_wrote_is_answered_by_its_transactions_fan_out_not_by_the_session() -> None:
    backend = BackendDouble(offset=9, durable_offset=9)
    session = _session(backend)
    session.receive_binary(_frame(_call(1)))
    change = TableChange("t", ((b"x", ("x",)),), ())
    tx = CommittedTx(9, Timestamp(1_000), "append", Caller(ALICE, CONNECTION), (change,))
    backend.calls[0][1](_outcome(CallStatus.COMMITTED, offset=9, tx=tx))
    assert _sent(session) == []


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (
            CallStatus.USER_ERROR,
            "sequence_conflict: head is 4",
            ReducerErr(b"\x1c\x00\x00\x00sequence_conflict: head is 4"),
        ),
        (CallStatus.NO_SUCH_REDUCER, "no such reducer: nope", ReducerInternalError("no such reducer")),
        (
            CallStatus.BAD_ARGUMENTS,
            "invalid arguments for reducer x: short",
            ReducerInternalError("invalid arguments for reducer x: short"),
        ),
        (CallStatus.INTERNAL_ERROR, "storage failed: disk", ReducerInternalError("storage failed: disk")),
    ],
)
def test_a_failed_call_is_answered_with_spacetimedbs_result_shape(
    status: CallStatus, message: str, expected: ReducerErr | ReducerInternalError
) -> None:
    backend = BackendDouble()
    session = _session(backend)
    session.receive_binary(_frame(_call(4)))
    backend.calls[0][1](_outcome(status, offset=0, message=message))
    assert _sent(session) == [ReducerResult(4, Timestamp(1_000), expected)]


def test_a_second_subscribe_with_a_held_query_set_id_closes_1011_and_stops_the_frame() -> None:
    backend = BackendDouble()
    session = _session(backend)
    session.receive_binary(
        _frame(Subscribe(1, 10, ("SELECT * FROM t",)), Subscribe(2, 10, ("SELECT * FROM t",)), OneOffQuery(3, "x"))
    )
    request = session.close_request
    assert request is not None and request.code == 1011 and request.reason is CloseReason.QUERY_SET_IN_USE
    assert "QuerySetId { id: 10 } already exists" in request.text
    assert len(request.reason_bytes) <= 123
    assert [type(m) for m in backend.asked] == [Subscribe]  # the query after the duplicate never ran
    assert _sent(session) == []


def test_an_unsubscribed_query_set_id_is_free_for_a_new_subscribe_at_once() -> None:
    backend = BackendDouble()
    session = _session(backend)
    session.receive_binary(
        _frame(Subscribe(1, 10, ("SELECT * FROM t",)), Unsubscribe(2, 10), Subscribe(3, 10, ("SELECT * FROM t",)))
    )
    assert session.close_request is None and session.query_sets == {10}
    assert [type(m) for m in _sent(session)] == [SubscribeApplied, UnsubscribeApplied, SubscribeApplied]


def test_a_subscribe_over_the_caps_gets_a_typed_refusal_and_holds_nothing() -> None:
    backend = BackendDouble(offset=3, durable_offset=1, refuse_subscribe="too many query sets on this connection")
    session = _session(backend)
    session.receive_binary(_frame(Subscribe(1, 10, ("SELECT * FROM t",))))
    # A refusal reveals no state: it is not held for durability.
    assert _sent(session) == [SubscriptionError(1, 10, "too many query sets on this connection")]
    assert session.query_sets == set() and session.close_request is None


def test_a_client_over_the_send_queue_bound_is_closed_1008_and_its_queue_dropped() -> None:
    backend = BackendDouble(offset=2, durable_offset=1)
    session = _session(backend, bounds=SendBounds(max_messages=3, max_bytes=1 << 20))
    session.receive_binary(_frame(*(OneOffQuery(i, "SELECT * FROM t") for i in range(3))))
    assert session.queued[0] == 3 and session.close_request is None  # held answers count toward the bound
    session.receive_binary(_frame(OneOffQuery(9, "SELECT * FROM t")))
    request = session.close_request
    assert request is not None and (request.code, request.text) == (1008, "send queue full: client too slow")
    assert session.queued == (0, 0) and session.data_to_send() == []
    session.release(2)
    assert session.data_to_send() == []


def test_messages_before_an_undecodable_one_run_then_the_socket_closes_1011() -> None:
    backend = BackendDouble()
    session = _session(backend)
    session.receive_binary(_frame(OneOffQuery(1, "SELECT * FROM t")) + b"\xff")
    assert [type(m) for m in backend.asked] == [OneOffQuery]
    request = session.close_request
    assert request is not None and request.reason is CloseReason.DECODE_ERROR and request.code == 1011
    assert request.text


def test_an_empty_v3_frame_closes_1011_with_spacetimedbs_text() -> None:
    session = _session(BackendDouble())
    session.receive_binary(b"")
    assert session.close_request is not None and session.close_request.text == EMPTY_V3_FRAME


def test_a_v2_frame_holds_exactly_one_message() -> None:
    backend = BackendDouble()
    session = _session(backend, version=2)
    session.receive_binary(_frame(OneOffQuery(1, "a"), OneOffQuery(2, "b")))
    assert session.close_request is not None and session.close_request.reason is CloseReason.DECODE_ERROR
    assert backend.asked == []


@pytest.mark.parametrize(("version", "reason"), [(2, CloseReason.TEXT_FRAME_V2), (3, CloseReason.TEXT_FRAME_V3)])
def test_a_text_frame_closes_1011_with_the_versions_text(version: int, reason: CloseReason) -> None:
    session = _session(BackendDouble(), version=version)
    session.receive_text()
    assert session.close_request is not None and session.close_request.reason is reason


def test_v3_coalesces_queued_messages_into_one_frame_and_v2_sends_one_frame_each() -> None:
    for version, frames in ((3, 1), (2, 3)):
        session = _session(BackendDouble(), version=version)
        for i in range(3):
            session.send(OneOffQueryResult(i, NO_ROWS))
        assert len(session.data_to_send()) == frames
        assert session.data_to_send() == []


def test_after_a_close_nothing_is_handled_or_sent_and_the_first_reason_stays() -> None:
    backend = BackendDouble()
    session = _session(backend)
    session.send(OneOffQueryResult(1, NO_ROWS))
    session.close(CloseReason.TOKEN_EXPIRED)
    session.close(CloseReason.SHUTTING_DOWN)
    session.receive_binary(_frame(OneOffQuery(2, "x")))
    session.send(OneOffQueryResult(3, NO_ROWS))
    assert session.close_reason is CloseReason.TOKEN_EXPIRED
    assert session.close_request is not None and session.close_request.code == 1008
    assert backend.asked == [] and session.data_to_send() == []


def test_a_close_reason_is_cut_to_123_bytes_at_a_character_boundary() -> None:
    session = _session(BackendDouble())
    session.close(CloseReason.CONNECTION_REFUSED, "é" * 100)
    assert session.close_request is not None
    raw = session.close_request.reason_bytes
    assert len(raw) <= 123 and raw.endswith(b"...")
    raw.decode("utf-8")


# A step of the property below: ("ask", commits before a query), ("free", _) a request that depends on no state (a
# procedure call, answered at offset 0), or ("durable", commits made durable).
_steps = st.lists(
    st.tuples(st.sampled_from(["ask", "free", "durable"]), st.integers(min_value=0, max_value=3)), max_size=40
)


@settings(max_examples=200, deadline=None)
@given(steps=_steps)
def test_every_answer_leaves_in_request_order_and_never_before_what_it_saw_is_durable(
    steps: list[tuple[str, int]],
) -> None:
    backend = BackendDouble()
    session = _session(backend)
    saw: dict[int, int] = {}  # request id → the offset its answer observed
    received: list[int] = []

    def collect() -> None:
        for message in _sent(session):
            assert isinstance(message, OneOffQueryResult | ProcedureResult)
            assert saw[message.request_id] <= backend.durable_offset, "answered before durable"
            received.append(message.request_id)

    for kind, amount in [*steps, ("durable", 1_000)]:
        if kind == "ask":
            backend.offset += amount
            request_id = len(saw) + 1
            saw[request_id] = backend.offset
            session.receive_binary(_frame(OneOffQuery(request_id, "SELECT * FROM t")))
        elif kind == "free":
            request_id = len(saw) + 1
            saw[request_id] = 0
            session.receive_binary(_frame(CallProcedure(request_id, CallProcedureFlags.DEFAULT, "p", b"")))
        else:
            backend.durable_offset = min(backend.offset, backend.durable_offset + amount)
            session.release(backend.durable_offset)
        collect()
    backend.durable_offset = backend.offset
    session.release(backend.offset)
    collect()
    assert received == sorted(saw)
