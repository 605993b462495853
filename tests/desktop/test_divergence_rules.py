"""Divergence is a rebuild, never silent: the pure rules behind it (`rebuild.judge`, `first_unlinked`, the guard).

Histories are real chains (computed with `stream_chain`): the desktop's copy and a host's copy that agree up to a
fork point and differ after it. Whatever the fork point and wherever the desktop's checkpoint, the desktop must never
call its copy current when it is not a prefix of the host's.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autopilot_sync.contract import stream_chain
from autopilot_sync.desktop.apply import Cursor, StreamEvent, deliver, restart_from
from autopilot_sync.desktop.rebuild import (
    AHEAD_NOTICE,
    EPOCH_NOTICE,
    FORK_NOTICE,
    TRIMMED_NOTICE,
    RebuildGuard,
    StreamHead,
    Verdict,
    first_unlinked,
    judge,
    rebuilt_cursor,
)
from autopilot_sync.desktop.store import DesktopStore

S = "run:1"


def history(length: int, tag: str = "", epoch: int = 1) -> list[StreamEvent]:
    """`length` chained events of stream S; `tag` changes every key (another history with the same seqs)."""
    chain = stream_chain.genesis(S, epoch)
    events = []
    for seq in range(1, length + 1):
        key, digest = f"{S}:{seq}{tag}", f"sha256:{seq:064x}"
        chain = stream_chain.link(chain, S, epoch, seq, "k", key, digest)
        events.append(StreamEvent(S, seq, key, "k", "{}", digest, seq, seq, epoch, chain))
    return events


def forked(length: int, fork_at: int) -> list[StreamEvent]:
    """A host history equal to `history(...)` below `fork_at` and different from it on (same seqs)."""
    base = history(length)[: fork_at - 1]
    chain = base[-1].chain if base else stream_chain.genesis(S, 1)
    events = list(base)
    for seq in range(fork_at, length + 1):
        key, digest = f"{S}:{seq}:other", f"sha256:{seq + 1000:064x}"
        chain = stream_chain.link(chain, S, 1, seq, "k", key, digest)
        events.append(StreamEvent(S, seq, key, "k", "{}", digest, seq, seq, 1, chain))
    return events


def head_of(events: list[StreamEvent], floor: int = 1, epoch: int = 1) -> StreamHead:
    below = [e for e in events if e.seq == floor - 1]
    floor_chain = below[0].chain if below else stream_chain.genesis(S, epoch)
    return StreamHead(S, len(events), floor, epoch, events[-1].chain if events else floor_chain, floor_chain)


def cursor_at(events: list[StreamEvent], checkpoint: int) -> Cursor:
    chain = events[checkpoint - 1].chain if checkpoint else ""
    return Cursor(S, checkpoint, 1, chain)


mine = history(10)


@pytest.mark.parametrize(
    ("cursor", "head", "verdict"),
    [
        (cursor_at(mine, 10), head_of(mine), Verdict.CURRENT),
        (cursor_at(mine, 6), head_of(mine), Verdict.CURRENT),
        (cursor_at(mine, 10), head_of(mine[:9]), Verdict.CHECKPOINT_AHEAD),  # the host came back with less
        (cursor_at(mine, 10), head_of(forked(10, 10)), Verdict.CHAIN_MISMATCH),  # ... and committed another 10
        (cursor_at(mine, 3), head_of(forked(10, 2), floor=4), Verdict.CHAIN_MISMATCH),  # at the floor
        (cursor_at(mine, 10), head_of(mine, epoch=2), Verdict.EPOCH_CHANGED),
        (Cursor(S, 10, 1), head_of(forked(10, 10)), Verdict.CURRENT),  # no local chain (copy from before chains)
        (cursor_at(mine, 10), StreamHead(S, 10, 1, 1), Verdict.CURRENT),  # a host without chains
    ],
)
def test_judge_names_a_diverged_copy(cursor: Cursor, head: StreamHead, verdict: Verdict) -> None:
    assert judge(cursor, head) is verdict


def test_every_divergence_has_its_notice() -> None:
    assert Verdict.CHECKPOINT_AHEAD.notice == AHEAD_NOTICE
    assert Verdict.CHAIN_MISMATCH.notice == FORK_NOTICE
    assert Verdict.EPOCH_CHANGED.notice == EPOCH_NOTICE
    assert Verdict.HISTORY_TRIMMED.notice == TRIMMED_NOTICE
    assert {v for v in Verdict if v.is_divergence} == {
        Verdict.CHECKPOINT_AHEAD,
        Verdict.CHAIN_MISMATCH,
        Verdict.EPOCH_CHANGED,
    }
    assert all(v.needs_rebuild for v in Verdict if v.is_divergence)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=1, max_value=30),
    st.integers(min_value=1, max_value=30),
    st.integers(min_value=0, max_value=30),
    st.integers(min_value=0, max_value=30),
)
def test_a_copy_that_is_not_a_prefix_of_the_host_is_never_resumed_silently(
    length: int, fork_at: int, checkpoint: int, host_length: int
) -> None:
    """The desktop applied `checkpoint` events of its history; the host holds `host_length` events that equal it
    only below `fork_at`. Either the head already says so, or the first event the host sends after the checkpoint
    fails to link: the copy is never resumed as if it were the host's."""
    checkpoint = min(checkpoint, length)
    local = history(length)
    host = forked(max(host_length, 1), fork_at)[:host_length]
    cursor = cursor_at(local, checkpoint)
    diverged = checkpoint >= fork_at or checkpoint > host_length
    verdict = judge(cursor, head_of(host))
    if not diverged:
        assert verdict is Verdict.CURRENT
        assert first_unlinked(cursor, host[checkpoint:]) is None
        return
    if verdict is Verdict.CURRENT:  # the head could not tell: the next event the host sends must
        after = host[checkpoint:]
        assert after, "a diverged copy at the head is caught by the head's chain"
        assert first_unlinked(cursor, after) == after[0]


def test_first_unlinked_points_at_the_first_event_that_breaks() -> None:
    events = history(6)
    assert first_unlinked(Cursor(S, 0, 1, stream_chain.genesis(S, 1)), events) is None
    assert first_unlinked(Cursor(S, 0, 1), events) is None  # no chain at the checkpoint: the first is taken as given
    start = Cursor(S, 0, 1, stream_chain.genesis(S, 1))
    spliced = [*events[:3], forked(6, 4)[3], *events[4:]]  # another history's seq 4 links; our seq 5 cannot follow it
    assert first_unlinked(start, spliced) == spliced[4]
    changed = [*events[:3], replace(events[3], kind="changed"), *events[4:]]
    assert first_unlinked(start, changed) == changed[3]
    garbage = [StreamEvent(S, 1, "k", "k", "{}", "h", 1, 1, 1, "sha256:nothex")]
    assert first_unlinked(Cursor(S, 0, 1, "sha256:nothex"), garbage) == garbage[0]


def test_the_applied_chain_value_moves_with_the_checkpoint() -> None:
    events = history(5)
    outcome = deliver(restart_from(Cursor(S, 0, 1, stream_chain.genesis(S, 1))), [events[1], events[0], events[3]])
    assert outcome.state.cursor.checkpoint == 2 and outcome.state.cursor.chain == events[1].chain


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=20), st.integers(min_value=1, max_value=20), st.integers(1, 4))
def test_a_divergence_rebuild_never_loops(length: int, fork_at: int, floor: int) -> None:
    host = forked(length, min(fork_at, length))
    head = head_of(host, floor=min(floor, length))
    guard = RebuildGuard()
    cursor = cursor_at(history(length), length)
    rebuilds = 0
    for _ in range(5):  # the same head seen again and again
        verdict = judge(cursor, head)
        cause = (verdict.value, head.head_seq, head.head_chain, head.floor_chain)
        if verdict.needs_rebuild and guard.allow(head, cause):
            cursor = rebuilt_cursor(head)
            rebuilds += 1
    assert rebuilds <= 1
    assert judge(cursor, head) is Verdict.CURRENT
    assert cursor.chain == head.floor_chain


def test_a_store_from_before_chains_upgrades_in_place(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE stream_cursor (stream_id TEXT PRIMARY KEY, checkpoint INTEGER NOT NULL, epoch INTEGER NOT NULL,
            updated_at REAL NOT NULL);
        CREATE TABLE applied_event (stream_id TEXT NOT NULL, seq INTEGER NOT NULL, idempotency_key TEXT NOT NULL,
            kind TEXT NOT NULL, payload TEXT NOT NULL, payload_hash TEXT NOT NULL, published_at_us INTEGER NOT NULL,
            committed_at_us INTEGER NOT NULL, applied_at REAL NOT NULL, PRIMARY KEY (stream_id, seq));
        INSERT INTO stream_cursor VALUES ('run:1', 1, 1, 0);
        INSERT INTO applied_event VALUES ('run:1', 1, 'run:1:1', 'k', '{}', 'sha256:00', 1, 1, 0);
        PRAGMA user_version=1;
        """
    )
    db.close()
    store = DesktopStore(path)
    assert store.cursor(S) == Cursor(S, 1, 1, "")
    assert store.seqs(S) == [1]
    events = history(2)
    store.apply(Cursor(S, 1, 1), [events[1]], Cursor(S, 2, 1, events[1].chain))
    store.close()
    reopened = DesktopStore(path)
    assert reopened.cursor(S) == Cursor(S, 2, 1, events[1].chain)
    assert reopened.recent(S)[-1] == events[1]


def test_the_ui_has_a_style_for_every_stream_phase_including_halted() -> None:
    from autopilot_sync.desktop.app import _STREAM_STYLE
    from autopilot_sync.desktop.state import StreamPhase

    assert set(_STREAM_STYLE) == set(StreamPhase)


def test_divergences_are_a_metric_next_to_rebuilds() -> None:
    from autopilot_sync.desktop.metrics import DesktopMetrics
    from autopilot_sync.desktop.state import DesktopState, StreamPhase, StreamView

    metrics = DesktopMetrics()
    view = StreamView(S, 5, 5, 1, 1, StreamPhase.LIVE, rebuilds=2, divergences=1, last_rebuild="chain_mismatch")
    metrics.observe(DesktopState(streams=(view,)))
    text = metrics.exposition().decode()
    assert f'autopilot_sync_desktop_stream_divergences_total{{stream_id="{S}"}} 1.0' in text
    assert f'autopilot_sync_desktop_stream_rebuilds_total{{stream_id="{S}"}} 2.0' in text
