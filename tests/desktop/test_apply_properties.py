"""The apply engine's promise, checked over random deliveries: in order, no duplicate, no hole, whatever arrives.

Each history is a list of deliveries drawn from the stream's events with duplicates, reorders and omissions (gaps).
The harness plays the sync layer: when the engine reports a gap it may (or may not yet) redeliver everything after
the checkpoint, as a resubscription does. The checker looks only at what was applied.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from autopilot_sync.desktop.apply import MAX_PENDING, ApplyState, Cursor, StreamEvent, deliver, restart_from

STREAM = "run:1"


def event(seq: int, stream: str = STREAM) -> StreamEvent:
    return StreamEvent(stream, seq, f"{stream}:{seq}", "test", f'{{"n":{seq}}}', f"sha256:{seq:064x}", seq, seq)


History = tuple[int, int, list[list[int]], list[bool]]


@st.composite
def histories(draw: st.DrawFn) -> History:
    """(events on the host, starting checkpoint, deliveries as lists of seqs, resubscribe-on-gap decisions)."""
    total = draw(st.integers(min_value=0, max_value=40))
    start = draw(st.integers(min_value=0, max_value=total))
    seqs = st.integers(min_value=1, max_value=max(total, 1)) if total else st.nothing()
    deliveries = draw(st.lists(st.lists(seqs, max_size=12), max_size=15)) if total else []
    resubscribe = draw(st.lists(st.booleans(), min_size=len(deliveries), max_size=len(deliveries)))
    return total, start, deliveries, resubscribe


def assert_in_order(applied: list[int], start: int) -> None:
    assert applied == list(range(start + 1, start + 1 + len(applied))), applied


@settings(max_examples=400, deadline=None)
@given(histories())
def test_random_deliveries_never_apply_out_of_order_or_twice(history: History) -> None:
    total, start, deliveries, resubscribe = history
    state = restart_from(Cursor(STREAM, start, 1))
    applied: list[int] = []
    for batch, redeliver in zip(deliveries, resubscribe, strict=True):
        outcome = deliver(state, [event(seq) for seq in batch])
        applied.extend(e.seq for e in outcome.applied)
        state = outcome.state
        if outcome.gap is not None:
            assert outcome.gap.expected_seq == state.cursor.checkpoint + 1 < outcome.gap.next_seen_seq
            if redeliver:  # the resubscription from the checkpoint: everything after it, in order
                outcome = deliver(state, [event(seq) for seq in range(state.cursor.checkpoint + 1, total + 1)])
                applied.extend(e.seq for e in outcome.applied)
                state = outcome.state
                assert outcome.gap is None
    assert_in_order(applied, start)
    assert state.cursor.checkpoint == start + len(applied)
    # Whatever happened, a final resubscription from the checkpoint completes the stream exactly once.
    final = deliver(state, [event(seq) for seq in range(state.cursor.checkpoint + 1, total + 1)])
    assert_in_order(applied + [e.seq for e in final.applied], start)
    assert final.state.cursor.checkpoint == total
    assert final.gap is None and final.state.pending == ()


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=30), st.lists(st.integers(min_value=1, max_value=30), max_size=40))
def test_seqs_at_or_below_the_checkpoint_are_always_dropped(checkpoint: int, seqs: list[int]) -> None:
    outcome = deliver(restart_from(Cursor(STREAM, checkpoint, 1)), [event(s) for s in seqs])
    assert all(e.seq > checkpoint for e in outcome.applied)
    assert all(e.seq > checkpoint for e in outcome.state.pending)
    assert outcome.duplicates >= sum(1 for s in seqs if s <= checkpoint)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=25), max_size=30))
def test_delivering_the_same_batch_twice_changes_nothing_the_second_time(seqs: list[int]) -> None:
    once = deliver(restart_from(Cursor(STREAM)), [event(s) for s in seqs])
    twice = deliver(once.state, [event(s) for s in seqs])
    assert twice.applied == ()
    assert twice.state == once.state


def test_a_gap_holds_later_events_until_the_hole_closes() -> None:
    first = deliver(restart_from(Cursor(STREAM)), [event(1), event(3), event(4)])
    assert [e.seq for e in first.applied] == [1]
    assert first.gap is not None and (first.gap.expected_seq, first.gap.next_seen_seq) == (2, 3)
    second = deliver(first.state, [event(2)])
    assert [e.seq for e in second.applied] == [2, 3, 4]
    assert second.gap is None


def test_pending_events_are_bounded() -> None:
    far = [event(seq) for seq in range(3, 3 + MAX_PENDING + 50)]
    outcome = deliver(restart_from(Cursor(STREAM)), far)
    assert len(outcome.state.pending) == MAX_PENDING
    assert outcome.state.pending[0].seq == 3


def test_an_event_of_another_stream_is_refused() -> None:
    try:
        deliver(ApplyState(Cursor(STREAM)), [event(1, stream="other")])
    except ValueError as exc:
        assert "other" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected ValueError")
