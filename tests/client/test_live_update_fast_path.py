"""`ClientSession.apply_live_update` (a one-table update read from its bytes) and `answer_from_frame` (a call's answer
with no rows) against `decode` + `handle`; `queue_call` (a call's bytes written directly) against `call` + `queue`.

Each fast path must be invisible: for any frame, either it declines and changes nothing, or it leaves the cache, the
reported changes and the callbacks exactly as the general path does, and a frame the general path refuses is refused
with the same `ProtocolError` (kind and text) and the cache untouched. Property-tested over generated updates (one or
more sets and tables, any number of inserts and deletes, rows the schema decodes or not, row lists written as
`FixedSize` or `RowOffsets`; answers of every outcome, to requests owed or not) and over those frames with bytes cut
off or flipped. `OwnerDouble` is a test double.
"""

from __future__ import annotations

from typing import Any

from chat_session_doubles import SCHEMA, OwnerDouble, person_row
from hypothesis import given, settings
from hypothesis import strategies as st

from autopilot_sync.client.cache import ClientCache
from autopilot_sync.client.errors import ProtocolError
from autopilot_sync.client.results import ReducerCommitted
from autopilot_sync.client.session import PROTOCOL_V2, PROTOCOL_V3, ClientSession
from autopilot_sync.spacetime import messages as m
from autopilot_sync.spacetime.frames import Compression, encode_v2_server_frame
from autopilot_sync.spacetime.rowlist import BsatnRowList, FixedSize, RowOffsets
from autopilot_sync.spacetime.values import Timestamp


def _session(protocol: str, applied: bool) -> tuple[ClientSession, list[tuple[str, Any]]]:
    session = ClientSession(SCHEMA, ClientCache(), protocol)
    query_set, subscribe = session.subscribe(["SELECT * FROM person"], OwnerDouble())
    if applied:
        rows = m.query_rows([("person", [person_row(1, "ann", 3), person_row(2, "bo", 4)])])
        session.handle(m.SubscribeApplied(subscribe.request_id, query_set.id, rows))
    seen: list[tuple[str, Any]] = []
    session.cache.on_insert("person", lambda row: seen.append(("insert", row)))
    session.cache.on_delete("person", lambda row: seen.append(("delete", row)))
    return session, seen


def _general(session: ClientSession, frame: bytes) -> None:
    for message in session.decode(frame):
        session.handle(message)


def _fast(session: ClientSession, frame: bytes) -> None:
    if not session.apply_live_update(frame):
        _general(session, frame)


def _outcome(protocol: str, applied: bool, frame: bytes, fast: bool) -> tuple[object, ...]:
    session, seen = _session(protocol, applied)
    error: tuple[object, str] | None = None
    try:
        (_fast if fast else _general)(session, frame)
    except ProtocolError as exc:
        error = (exc.kind, str(exc))
    return error, sorted(session.cache.rows("person")), seen


def _row_list(rows: list[bytes], fixed: bool) -> BsatnRowList:
    if fixed and rows and len({len(r) for r in rows}) == 1:
        return BsatnRowList(FixedSize(len(rows[0])), b"".join(rows))
    offsets, at = [], 0
    for row in rows:
        offsets.append(at)
        at += len(row)
    return BsatnRowList(RowOffsets(tuple(offsets)), b"".join(rows))


ROWS = st.one_of(
    st.builds(person_row, st.integers(1, 6), st.sampled_from(["ann", "bo", "cy", "dee"]), st.integers(0, 9)),
    st.binary(max_size=12),  # rows the schema does not decode
)
TABLE_UPDATES = st.builds(
    lambda table, inserts, deletes, fixed: m.TableUpdate(
        table, (m.PersistentTableRows(_row_list(inserts, fixed), _row_list(deletes, fixed)),)
    ),
    st.sampled_from(["person", "person", "person", "no_such_table"]),
    st.lists(ROWS, max_size=3),
    st.lists(ROWS, max_size=2),
    st.booleans(),
)
UPDATES = st.builds(
    lambda sets: m.TransactionUpdate(tuple(m.QuerySetUpdate(qs, tuple(tables)) for qs, tables in sets)),
    st.lists(st.tuples(st.sampled_from([1, 1, 1, 2]), st.lists(TABLE_UPDATES, min_size=1, max_size=2)), max_size=2),
)


@settings(max_examples=400, deadline=None)
@given(
    UPDATES,
    st.sampled_from([PROTOCOL_V3, PROTOCOL_V2]),
    st.booleans(),
    st.one_of(st.none(), st.tuples(st.integers(0, 600), st.integers(0, 255)), st.integers(1, 40)),
)
def test_the_live_update_fast_path_agrees_with_decode_and_handle(
    update: m.TransactionUpdate, protocol: str, applied: bool, damage: tuple[int, int] | int | None
) -> None:
    frame = encode_v2_server_frame(update, Compression.NONE)
    if isinstance(damage, tuple):  # one byte changed
        at, value = damage
        if at < len(frame):
            frame = frame[:at] + bytes((value,)) + frame[at + 1 :]
    elif isinstance(damage, int):  # cut short
        frame = frame[: max(1, len(frame) - damage)]
    assert _outcome(protocol, applied, frame, fast=True) == _outcome(protocol, applied, frame, fast=False)


def test_a_one_row_update_takes_the_fast_path_in_both_row_list_forms() -> None:
    row = person_row(3, "cy", 5)
    for rows in (BsatnRowList(FixedSize(len(row)), row), BsatnRowList(RowOffsets((0,)), row)):
        session, seen = _session(PROTOCOL_V3, applied=True)
        change = m.PersistentTableRows(rows, BsatnRowList(RowOffsets(()), b""))
        update = m.TransactionUpdate((m.QuerySetUpdate(1, (m.TableUpdate("person", (change,)),)),))
        assert session.apply_live_update(encode_v2_server_frame(update, Compression.NONE))
        assert [kind for kind, _ in seen] == ["insert"] and seen[0][1].name == "cy"
        assert sorted(p.name for p in session.cache.rows("person")) == ["ann", "bo", "cy"]


def test_frames_that_are_not_a_live_update_are_declined_untouched() -> None:
    session, seen = _session(PROTOCOL_V3, applied=True)
    answer = m.ReducerResult(1, Timestamp(0), m.ReducerOkEmpty())
    for frame in (encode_v2_server_frame(answer, Compression.NONE), b"\x00\x04", b"", b"\x02\x04" + bytes(40)):
        assert not session.apply_live_update(frame)
    assert seen == [] and len(session.cache.rows("person")) == 2


OUTCOMES = st.one_of(
    st.builds(lambda ret: m.ReducerOk(ret, m.TransactionUpdate(())), st.binary(max_size=8)),
    st.builds(lambda update: m.ReducerOk(b"", update), UPDATES),
    st.just(m.ReducerOkEmpty()),
    st.builds(m.ReducerErr, st.binary(max_size=8)),
    st.builds(m.ReducerInternalError, st.text(max_size=8)),
)
DAMAGE = st.one_of(st.none(), st.tuples(st.integers(0, 60), st.integers(0, 255)), st.integers(1, 30))


def _answer_outcome(frame: bytes, fast: bool) -> tuple[object, ...]:
    session, seen = _session(PROTOCOL_V3, applied=True)
    batches: list[int] = []
    session.cache.on_batch(lambda changes: batches.append(len(changes)))
    session.call("add_person", b"")  # request 1
    session.call("add_person", b"")  # request 2
    answers: list[object] = []
    error: tuple[object, str] | None = None
    try:
        answered = session.answer_from_frame(frame) if fast else None
        if answered is not None:
            answers.append(answered)
        else:
            answers.extend(session.handle(message) for message in session.decode(frame))
    except ProtocolError as exc:
        error = (exc.kind, str(exc))
    return error, answers, sorted(session._calls), sorted(session.cache.rows("person")), seen, batches


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([1, 2, 7]), st.integers(-(2**63), 2**63 - 1), OUTCOMES, DAMAGE)
def test_the_answer_fast_path_agrees_with_decode_and_handle(
    request_id: int, micros: int, outcome: m.ReducerOutcome, damage: tuple[int, int] | int | None
) -> None:
    frame = encode_v2_server_frame(m.ReducerResult(request_id, Timestamp(micros), outcome), Compression.NONE)
    if isinstance(damage, tuple):
        at, value = damage
        if at < len(frame):
            frame = frame[:at] + bytes((value,)) + frame[at + 1 :]
    elif isinstance(damage, int):
        frame = frame[: max(1, len(frame) - damage)]
    assert _answer_outcome(frame, fast=True) == _answer_outcome(frame, fast=False)


def test_a_committed_call_with_no_rows_takes_the_answer_fast_path() -> None:
    session, _ = _session(PROTOCOL_V3, applied=True)
    request = session.call("add_person", b"")
    answer = m.ReducerResult(request.request_id, Timestamp(5), m.ReducerOk(b"r", m.TransactionUpdate(())))
    answered = session.answer_from_frame(encode_v2_server_frame(answer, Compression.NONE))
    assert answered is not None and answered.request_id == request.request_id
    assert answered.result == ReducerCommitted("add_person", Timestamp(5), (), b"r")
    assert session._calls == {}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=12), st.binary(max_size=40)), min_size=1, max_size=5))
def test_a_queued_call_is_the_bytes_of_its_call_reducer_message(calls: list[tuple[str, bytes]]) -> None:
    direct, built = ClientSession(SCHEMA, ClientCache(), PROTOCOL_V3), ClientSession(SCHEMA, ClientCache(), PROTOCOL_V3)
    for reducer, args in calls:
        request_id = direct.queue_call(reducer, args)
        message = built.call(reducer, args)
        built.queue(message)
        assert request_id == message.request_id
    assert direct.frames_to_send() == built.frames_to_send()
    assert direct._calls == built._calls
