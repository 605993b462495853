"""The checker is trusted only because it catches planted faults: gap, duplicate, reorder, hash, key, phantom,
silent partial replay, wrong presence, an acknowledged event missing from the host, and unknown outcomes (calls
without an answer) that took effect twice or, though retried, never; and passes a clean history (including a
declared rebuild, and unknown outcomes that took effect once or, unretried, not at all)."""

from __future__ import annotations

from dataclasses import replace

from autopilot_sync.contract.canonical import hash_value
from autopilot_sync.verification.checker import HOST, ViolationKind, check_history
from autopilot_sync.verification.history import (
    Ack,
    Applied,
    ClientHistory,
    History,
    PresenceCheck,
    PresenceRow,
    StreamView,
    Unknown,
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


# ----- unknown outcomes and the host's own history -----


def host_view(seqs: list[int], extra: tuple[Applied, ...] = (), floor: int | None = None) -> tuple[StreamView, ...]:
    return (StreamView(STREAM, applied(seqs) + extra, floor),)


def extra_event(seq: int, n: int) -> Applied:
    """An event the host holds at `seq` whose payload is the producer's event number `n` (key chosen by the host)."""
    return Applied(STREAM, seq, f"{STREAM}:{seq}", payload(n)[1])


def unknown(n: int, retried: bool) -> Unknown:
    return Unknown(f"call-{n}", STREAM, payload(n)[1], retried, "timed out")


def test_an_unknown_outcome_may_take_effect_once_or_not_at_all() -> None:
    landed = replace(
        history([1, 2, 3, 4, 5, 6]), unknowns=(unknown(6, retried=False),), final=host_view([1, 2, 3, 4, 5, 6])
    )
    report = check_history(landed)
    assert report.ok, report.summary()
    assert report.unknown_outcomes == 1
    vanished = replace(
        history([1, 2, 3, 4, 5]), unknowns=(unknown(6, retried=False),), final=host_view([1, 2, 3, 4, 5])
    )
    assert check_history(vanished).ok


def test_an_unknown_outcome_that_took_effect_twice_is_caught() -> None:
    twice = (extra_event(6, 6), extra_event(7, 6))
    planted = replace(
        history([1, 2, 3, 4, 5]), unknowns=(unknown(6, retried=False),), final=host_view([1, 2, 3, 4, 5], twice)
    )
    report = check_history(planted)
    duplicated = [v for v in report.violations if v.kind is ViolationKind.UNKNOWN_DUPLICATED]
    assert len(duplicated) == 1 and duplicated[0].seq == 7, report.summary()
    assert "2 times (seqs 6, 7)" in duplicated[0].detail
    # Neither copy is taken as the resolution, so the host holding them is reported too.
    assert report.kinds() == {ViolationKind.UNKNOWN_DUPLICATED, ViolationKind.UNACKNOWLEDGED}


def test_a_retried_unknown_outcome_that_never_took_effect_is_lost() -> None:
    planted = replace(history([1, 2, 3, 4, 5]), unknowns=(unknown(6, retried=True),), final=host_view([1, 2, 3, 4, 5]))
    report = check_history(planted)
    assert report.kinds() == {ViolationKind.UNKNOWN_LOST}, report.summary()
    assert "call-6" in report.violations[0].detail


def test_a_retried_unknown_outcome_that_was_acknowledged_then_trimmed_is_not_lost() -> None:
    trimmed = replace(
        history([3, 4, 5], rebuilt_from=3), unknowns=(unknown(2, retried=True),), final=host_view([3, 4, 5], floor=3)
    )
    assert check_history(trimmed).ok, check_history(trimmed).summary()


def test_an_unknown_outcome_that_took_effect_must_reach_every_client() -> None:
    planted = replace(
        history([1, 2, 3, 4, 5]), unknowns=(unknown(6, retried=False),), final=host_view([1, 2, 3, 4, 5, 6])
    )
    report = check_history(planted)
    assert report.kinds() == {ViolationKind.LOST}
    assert report.violations[0].client == "desk" and report.violations[0].seq == 6


def test_an_acknowledged_event_the_host_lost_is_caught_even_when_every_client_kept_it() -> None:
    planted = replace(history([1, 2, 3, 4, 5]), final=host_view([1, 2, 3, 4]))
    report = check_history(planted)
    assert report.kinds() == {ViolationKind.LOST}
    assert report.violations[0].client == HOST and report.violations[0].seq == 5


def test_unknown_outcomes_and_the_host_history_survive_json() -> None:
    original = replace(
        history([1, 2, 3, 4, 5]),
        unknowns=(unknown(6, retried=True), unknown(7, retried=False)),
        final=host_view([1, 2, 3, 4, 5], (extra_event(6, 7),)),
    )
    again = history_from_json(history_to_json(original))
    assert again.unknowns == original.unknowns
    assert (
        check_history(again).kinds()
        == check_history(original).kinds()
        == {
            ViolationKind.UNKNOWN_LOST,
            ViolationKind.LOST,
        }
    )
