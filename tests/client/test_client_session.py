"""The SDK's protocol state as a pure state machine: messages in, cache changes and answers out, no socket.

Every test feeds `ClientSession` decoded server messages (or raw frames) and checks what it tells the adapter, what
the cache holds and which messages it refuses. `OwnerDouble` is a test double of the query set owner (it is never
asked to do anything here).
"""

from __future__ import annotations

import pytest
from chat_session_doubles import SCHEMA, OwnerDouble, person_row

from autopilot_sync.client.cache import ClientCache
from autopilot_sync.client.errors import OneOffQueryError, ProtocolError, ProtocolErrorKind
from autopilot_sync.client.query_set import QuerySet, QuerySetState
from autopilot_sync.client.results import ReducerCommitted, ReducerFailed
from autopilot_sync.client.session import (
    PROTOCOL_V2,
    PROTOCOL_V3,
    CallAnswered,
    ClientSession,
    QueryAnswered,
    UnsubscribeDone,
)
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime import messages as m
from autopilot_sync.spacetime.frames import (
    V3_CLIENT_FRAME_CAP,
    Compression,
    encode_v3_server_frames,
    split_client_frame,
)
from autopilot_sync.spacetime.values import ConnectionId, Identity, Timestamp


def _session(protocol: str = PROTOCOL_V3) -> ClientSession:
    return ClientSession(SCHEMA, ClientCache(), protocol)


def _applied(session: ClientSession, *rows: bytes) -> tuple[QuerySet, m.Subscribe]:
    query_set, subscribe = session.subscribe(["SELECT * FROM person"], OwnerDouble())
    session.handle(m.SubscribeApplied(subscribe.request_id, query_set.id, m.query_rows([("person", list(rows))])))
    return query_set, subscribe


def _update(query_set_id: int, inserts: list[bytes], deletes: list[bytes]) -> m.TransactionUpdate:
    change = m.PersistentTableRows(m.BsatnRowList.from_rows(inserts), m.BsatnRowList.from_rows(deletes))
    return m.TransactionUpdate((m.QuerySetUpdate(query_set_id, (m.TableUpdate("person", (change,)),)),))


def _names(session: ClientSession) -> list[str]:
    return sorted(row.name for row in session.cache.rows("person"))


def test_request_ids_count_up_and_wrap_at_u32() -> None:
    session = _session()
    assert [session.call("r", b"").request_id for _ in range(3)] == [1, 2, 3]
    session._next_request = 0xFFFFFFFF
    assert session.one_off("SELECT 1").request_id == 0


def test_rows_arrive_with_subscribe_applied_and_change_with_each_update_in_wire_order() -> None:
    session = _session()
    query_set, _ = _applied(session, person_row(1, "ada", 1))
    assert query_set.state is QuerySetState.APPLIED and _names(session) == ["ada"]
    session.handle(_update(query_set.id, [person_row(1, "ada", 2)], [person_row(1, "ada", 1)]))
    session.handle(_update(query_set.id, [person_row(2, "bob", 5)], []))
    assert sorted((row.name, row.age) for row in session.cache.rows("person")) == [("ada", 2), ("bob", 5)]


def test_an_update_for_a_set_still_pending_is_refused_before_it_touches_the_cache() -> None:
    session = _session()
    query_set, _ = session.subscribe(["SELECT * FROM person"], OwnerDouble())
    with pytest.raises(ProtocolError) as refused:
        session.handle(_update(query_set.id, [person_row(1, "ada", 1)], []))
    assert refused.value.kind is ProtocolErrorKind.UNKNOWN_QUERY_SET
    assert _names(session) == []


@pytest.mark.parametrize(
    "message",
    [
        m.ReducerResult(9, Timestamp(1), m.ReducerOkEmpty()),
        m.OneOffQueryResult(9, "nope"),
        m.InitialConnection(Identity(1), ConnectionId(2), "again"),
    ],
)
def test_an_answer_to_a_request_never_sent_is_a_protocol_error(message: m.ServerMessage) -> None:
    with pytest.raises(ProtocolError):
        _session().handle(message)


def test_reducer_results_answer_the_call_with_typed_results() -> None:
    session = _session()
    failed = session.call("add_person", b"")
    ok = session.call("add_person", b"")
    text = bsatn.encode(at.STRING, "name taken")
    answer = session.handle(m.ReducerResult(failed.request_id, Timestamp(5), m.ReducerErr(text)))
    assert answer == CallAnswered(failed.request_id, ReducerFailed("add_person", Timestamp(5), "name taken"))
    answer = session.handle(m.ReducerResult(ok.request_id, Timestamp(6), m.ReducerOkEmpty()))
    assert answer == CallAnswered(ok.request_id, ReducerCommitted("add_person", Timestamp(6), ()))
    with pytest.raises(ProtocolError):  # answered once only
        session.handle(m.ReducerResult(ok.request_id, Timestamp(7), m.ReducerOkEmpty()))


def test_a_refused_one_off_query_answers_with_the_servers_message() -> None:
    session = _session()
    query = session.one_off("SELECT * FROM nowhere")
    answer = session.handle(m.OneOffQueryResult(query.request_id, "no such table"))
    assert isinstance(answer, QueryAnswered) and isinstance(answer.result, OneOffQueryError)
    assert str(answer.result) == "no such table"


def test_unsubscribe_is_sent_once_and_its_rows_leave_when_the_server_confirms() -> None:
    session = _session()
    query_set, _ = _applied(session, person_row(1, "ada", 1))
    unsubscribe = session.unsubscribe(query_set)
    assert isinstance(unsubscribe, m.Unsubscribe)
    assert session.unsubscribe(query_set) == unsubscribe.request_id  # already under way: wait for that one
    assert _names(session) == ["ada"]
    answer = session.handle(m.UnsubscribeApplied(unsubscribe.request_id, query_set.id, None))
    assert answer == UnsubscribeDone(unsubscribe.request_id)
    assert _names(session) == [] and query_set.state is QuerySetState.ENDED
    assert session.unsubscribe(query_set) is None


def test_a_set_dropped_by_the_server_while_unsubscribing_ends_the_unsubscribe() -> None:
    session = _session()
    query_set, _ = _applied(session, person_row(1, "ada", 1))
    unsubscribe = session.unsubscribe(query_set)
    assert isinstance(unsubscribe, m.Unsubscribe)
    answer = session.handle(m.SubscriptionError(None, query_set.id, "dropped"))
    assert answer == UnsubscribeDone(unsubscribe.request_id)
    assert query_set.state is QuerySetState.ERROR and _names(session) == []


def test_v3_packs_queued_messages_into_frames_under_the_cap_in_order_and_v2_sends_one_each() -> None:
    big = "x" * (V3_CLIENT_FRAME_CAP // 3)
    for protocol, small_frames in ((PROTOCOL_V3, 1), (PROTOCOL_V2, 3)):
        session = _session(protocol)
        for i in range(3):
            session.queue(m.OneOffQuery(i, "SELECT 1"))
        assert len(session.frames_to_send()) == small_frames
        assert session.frames_to_send() == []
    session = _session(PROTOCOL_V3)
    for i in range(4):
        session.queue(m.OneOffQuery(i, big))
    frames = session.frames_to_send()
    assert len(frames) == 2 and all(len(f) <= V3_CLIENT_FRAME_CAP for f in frames)
    sent = [msg for f in frames for msg in split_client_frame(f)]
    assert [msg.request_id for msg in sent if isinstance(msg, m.OneOffQuery)] == [0, 1, 2, 3]


def test_a_v2_frame_with_two_messages_is_refused() -> None:
    session = _session(PROTOCOL_V2)
    messages = [m.OneOffQueryResult(1, "a"), m.OneOffQueryResult(2, "b")]
    (frame,) = encode_v3_server_frames(messages, Compression.NONE)
    with pytest.raises(ProtocolError) as refused:
        session.decode(frame)
    assert refused.value.kind is ProtocolErrorKind.UNDECODABLE_FRAME


def test_after_the_connection_is_lost_nothing_is_owed_and_plain_sets_end() -> None:
    session = _session()
    query_set, _ = _applied(session, person_row(1, "ada", 1))
    call = session.call("add_person", b"")
    session.connection_lost("gone")
    assert query_set.state is QuerySetState.ENDED and session.query_sets() == []
    with pytest.raises(ProtocolError):
        session.handle(m.ReducerResult(call.request_id, Timestamp(1), m.ReducerOkEmpty()))
