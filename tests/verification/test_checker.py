"""The checker is trusted only because it catches planted faults: gap, duplicate, reorder, hash, key, phantom,
silent partial replay, and wrong presence; and passes a clean history (including a declared rebuild)."""

from __future__ import annotations

from dataclasses import replace

from autopilot_sync.module.canonical import hash_value
from autopilot_sync.verification.checker import ViolationKind, check_history
from autopilot_sync.verification.history import (
    Ack,
    Applied,
    ClientHistory,
    History,
    PresenceCheck,
    PresenceRow,
    StreamView,
    history_from_json,
    history_to_json,
)

STREAM = "runtime.run.r1.events"


def payload(seq: int) -> tuple[str, str]:
    return hash_value({"run_id": "r1", "type": "run.message.delta", "data": {"n": seq}})


def acks(n: int) -> tuple[Ack, ...]:
    return tuple(Ack(STREAM, seq, f"{STREAM}:{seq}", payload(seq)[1]) for seq in range(1, n + 1))


def applied(seqs: list[int]) -> tuple[Applied, ...]:
    return tuple(Applied(STREAM, seq, f"{STREAM}:{seq}", payload(seq)[1], payload(seq)[0]) for seq in seqs)


def history(seqs: list[int], n: int = 5, rebuilt_from: int | None = None) -> History:
    return History(acks(n), (ClientHistory("desk", (StreamView(STREAM, applied(seqs), rebuilt_from),)),))


def test_a_clean_history_passes() -> None:
    report = check_history(history([1, 2, 3, 4, 5]))
    assert report.ok, report.summary()
    assert report.applied_events == 5


def test_a_planted_gap_is_lost() -> None:
    report = check_history(history([1, 2, 4, 5]))
    assert report.kinds() == {ViolationKind.LOST}
    assert report.violations[0].seq == 3


def test_a_client_not_caught_up_is_lost() -> None:
    report = check_history(history([1, 2, 3]))
    assert report.kinds() == {ViolationKind.LOST}
    assert "4-5" in report.violations[0].detail


def test_a_planted_duplicate_is_caught() -> None:
    report = check_history(history([1, 2, 3, 3, 4, 5]))
    assert report.kinds() == {ViolationKind.DUPLICATE}


def test_a_planted_reorder_is_caught() -> None:
    report = check_history(history([1, 3, 2, 4, 5]))
    assert report.kinds() == {ViolationKind.OUT_OF_ORDER}
    assert report.violations[0].seq == 2


def test_a_planted_hash_mismatch_is_caught() -> None:
    base = history([1, 2, 3, 4, 5])
    view = base.clients[0].streams[0]
    events = list(view.applied)
    events[2] = replace(events[2], payload_hash="sha256:" + "0" * 64)
    planted = replace(base, clients=(ClientHistory("desk", (replace(view, applied=tuple(events)),)),))
    report = check_history(planted)
    assert report.kinds() == {ViolationKind.HASH_MISMATCH}
    assert report.violations[0].seq == 3


def test_a_payload_altered_under_its_hash_is_caught() -> None:
    base = history([1, 2, 3, 4, 5])
    view = base.clients[0].streams[0]
    events = list(view.applied)
    events[0] = replace(events[0], payload='{"data":{"n":99},"run_id":"r1","type":"run.message.delta"}')
    planted = replace(base, clients=(ClientHistory("desk", (replace(view, applied=tuple(events)),)),))
    assert check_history(planted).kinds() == {ViolationKind.HASH_MISMATCH}


def test_a_wrong_idempotency_key_is_caught() -> None:
    base = history([1, 2])
    view = base.clients[0].streams[0]
    events = (view.applied[0], replace(view.applied[1], idempotency_key="other:2"))
    planted = History(acks(2), (ClientHistory("desk", (replace(view, applied=events),)),))
    assert check_history(planted).kinds() == {ViolationKind.KEY_MISMATCH}


def test_an_event_nobody_acknowledged_is_a_phantom() -> None:
    report = check_history(history([1, 2, 3, 4, 5, 6]))
    assert report.kinds() == {ViolationKind.UNACKNOWLEDGED}


def test_a_silent_partial_replay_is_loss_but_a_declared_rebuild_is_not() -> None:
    assert check_history(history([3, 4, 5])).kinds() == {ViolationKind.LOST}
    assert check_history(history([3, 4, 5], rebuilt_from=3)).ok


def test_a_client_that_never_saw_a_stream_lost_it() -> None:
    planted = History(acks(2), (ClientHistory("desk", ()),))
    assert check_history(planted).kinds() == {ViolationKind.LOST}


def test_two_different_acks_for_one_seq_are_a_conflict() -> None:
    twice = (*acks(2), Ack(STREAM, 2, f"{STREAM}:2", "sha256:" + "1" * 64))
    report = check_history(History(twice, ()))
    assert report.kinds() == {ViolationKind.ACK_CONFLICT}


def rows(*keys: str) -> tuple[PresenceRow, ...]:
    return tuple(PresenceRow(f"c{i}", f"id-{key}", key, "test") for i, key in enumerate(keys))


def test_correct_presence_passes() -> None:
    check = PresenceCheck("two", rows("a", "b"), {"a": 1, "b": 1})
    assert check_history(History((), (), (check,))).ok


def test_a_wrong_presence_count_is_caught() -> None:
    stale = PresenceCheck("stale row", rows("a", "b", "b"), {"a": 1, "b": 1})
    report = check_history(History((), (), (stale,)))
    assert report.kinds() == {ViolationKind.PRESENCE}
    assert any("3 connections, expected 2" in v.detail for v in report.violations)
    missing = PresenceCheck("missing", rows("a"), {"a": 1, "b": 1})
    assert any("distinct identities" in v.detail for v in check_history(History((), (), (missing,))).violations)
    empty_expected = PresenceCheck("after disconnect", rows("a"), {})
    assert not check_history(History((), (), (empty_expected,))).ok


def test_a_repeated_connection_id_is_caught() -> None:
    doubled = (PresenceRow("c1", "id-a", "a", "test"), PresenceRow("c1", "id-a", "a", "test"))
    check = PresenceCheck("dup", doubled, {"a": 2})
    assert check_history(History((), (), (check,))).kinds() == {ViolationKind.PRESENCE}


def test_histories_survive_json() -> None:
    original = replace(history([1, 2, 4]), presence=(PresenceCheck("p", rows("a"), {"a": 2}),))
    again = history_from_json(history_to_json(original))
    expected = {ViolationKind.LOST, ViolationKind.PRESENCE}
    assert check_history(again).kinds() == check_history(original).kinds() == expected
