"""The local store keeps events and checkpoint together; stale cursors rebuild once; checkpoint reports are bounded."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autopilot_sync.desktop.acks import AckCall, AckScheduler
from autopilot_sync.desktop.apply import Cursor, StreamEvent
from autopilot_sync.desktop.rebuild import RebuildGuard, StreamHead, Verdict, judge, rebuilt_cursor
from autopilot_sync.desktop.store import DesktopStore, StoreConflictError

S = "run:1"


def ev(seq: int) -> StreamEvent:
    return StreamEvent(S, seq, f"{S}:{seq}", "k", "{}", "sha256:00", seq, seq)


def test_applied_events_and_checkpoint_survive_reopen(tmp_path: Path) -> None:
    store = DesktopStore(tmp_path / "d.sqlite3")
    store.set_epoch(Cursor(S), 1)
    store.apply(Cursor(S, 0, 1), [ev(1), ev(2)], Cursor(S, 2, 1))
    store.close()
    reopened = DesktopStore(tmp_path / "d.sqlite3")
    assert reopened.cursor(S) == Cursor(S, 2, 1)
    assert reopened.seqs(S) == [1, 2]
    assert [e.seq for e in reopened.recent(S, 1)] == [2]


def test_a_write_that_does_not_continue_the_checkpoint_writes_nothing(tmp_path: Path) -> None:
    store = DesktopStore(tmp_path / "d.sqlite3")
    store.set_epoch(Cursor(S), 1)
    store.apply(Cursor(S, 0, 1), [ev(1)], Cursor(S, 1, 1))
    with pytest.raises(StoreConflictError):
        store.apply(Cursor(S, 1, 1), [ev(3)], Cursor(S, 3, 1))  # a hole
    with pytest.raises(StoreConflictError):
        store.apply(Cursor(S, 0, 1), [ev(1)], Cursor(S, 1, 1))  # stale "before": would apply seq 1 twice
    assert store.cursor(S) == Cursor(S, 1, 1)
    assert store.seqs(S) == [1]


def test_reset_stream_drops_the_local_copy_atomically(tmp_path: Path) -> None:
    store = DesktopStore(tmp_path / "d.sqlite3")
    store.set_epoch(Cursor(S), 1)
    store.apply(Cursor(S, 0, 1), [ev(1), ev(2)], Cursor(S, 2, 1))
    store.reset_stream(Cursor(S, 9, 1))
    assert store.seqs(S) == []
    assert store.cursor(S) == Cursor(S, 9, 1)


@pytest.mark.parametrize(
    ("cursor", "head", "verdict"),
    [
        (Cursor(S, 0, 0), StreamHead(S, 5, 1, 1), Verdict.ADOPT_EPOCH),
        (Cursor(S, 3, 1), StreamHead(S, 5, 1, 1), Verdict.CURRENT),
        (Cursor(S, 3, 1), StreamHead(S, 9, 4, 1), Verdict.CURRENT),  # floor 4: seq 4.. still there
        (Cursor(S, 3, 1), StreamHead(S, 9, 5, 1), Verdict.HISTORY_TRIMMED),
        (Cursor(S, 0, 0), StreamHead(S, 9, 5, 1), Verdict.HISTORY_TRIMMED),
        (Cursor(S, 3, 1), StreamHead(S, 0, 1, 2), Verdict.EPOCH_CHANGED),
    ],
)
def test_judge_names_stale_cursors(cursor: Cursor, head: StreamHead, verdict: Verdict) -> None:
    assert judge(cursor, head) is verdict


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=0, max_value=50),
    st.integers(min_value=0, max_value=3),
    st.integers(min_value=1, max_value=60),
    st.integers(min_value=1, max_value=3),
)
def test_a_rebuild_never_loops(checkpoint: int, epoch: int, floor: int, head_epoch: int) -> None:
    head = StreamHead(S, max(floor - 1, 0) + 5, floor, head_epoch)
    guard = RebuildGuard()
    cursor = Cursor(S, checkpoint, epoch)
    rebuilds = 0
    for _ in range(5):  # keep judging the same head, as repeated head updates would
        if judge(cursor, head).needs_rebuild and guard.allow(head):
            cursor = rebuilt_cursor(head)
            rebuilds += 1
    assert rebuilds <= 1
    assert not judge(cursor, head).needs_rebuild or guard.count(S) == 1
    assert not guard.allow(head) or rebuilds == 0


def test_checkpoint_reports_are_rate_bounded_and_carry_the_newest_seq() -> None:
    acks = AckScheduler(min_interval=1.0)
    calls: list[AckCall] = []
    for step in range(100):  # 100 applies over 5 seconds
        acks.note(S, step + 1)
        calls.extend(acks.due(now=step * 0.05))
    assert len(calls) <= 6
    calls.extend(acks.due(now=10.0))
    assert calls[-1] == AckCall(S, 100)
    assert [c.seq for c in calls] == sorted(c.seq for c in calls)


def test_reports_below_the_recorded_checkpoint_are_not_sent() -> None:
    acks = AckScheduler(min_interval=0.0)
    acks.note(S, 10)
    assert acks.due(0.0) == [AckCall(S, 10)]
    acks.note(S, 3)  # a reset restarted the stream below what the host recorded
    assert acks.due(1.0) == []
    acks.note(S, 11)
    assert acks.due(2.0) == [AckCall(S, 11)]
