"""Stale cursor and divergence decisions: is the local copy still a prefix of the host's stream, or must it rebuild?

Pure. The local copy is resumable only while it is a prefix of the host's history. `judge` compares the cursor with
each `stream_head` the desktop sees:
- a checkpoint below `retained_from_seq - 1` needs events that no longer exist (history trimmed);
- a changed `epoch` means the stream started over (`reset_stream`) or the host set aside history at start;
- a checkpoint above `head_seq` means the host has less history than was applied here (a restore from an older
  copy, a lost tail, a wiped data dir);
- a chain value at the checkpoint that is not the host's (`head_chain` when the checkpoint is the head,
  `floor_chain` when it is just below the floor) means the host's history forked from the local one.
`first_unlinked` makes the same chain check on every event as it is applied: each must link to the chain value
before it (docs/protocol.md "Stream hash chain"), so a host that committed a *different* seq 198 after coming back
at 197 is caught by the first event after it, and by the head once it equals the checkpoint. Any of these drops
the local copy and rebuilds from the retained floor, with a notice saying why and a counter (DESIGN.md "Stale
cursor", "Integrity beyond the anchors") — never a silent partial replay or fork.

Bounded: a rebuild is tied to the head (or, for a broken link, the event) that caused it, and `RebuildGuard` refuses
a second rebuild for the same cause. After a rebuild the cursor sits at `retained_from_seq - 1` in the head's epoch
with the head's `floor_chain`, which `judge` calls current, so only a new change on the host can cause another one:
never a loop. A host whose own chain does not verify is refused the second time: the stream stops before the bad
event and says so.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from autopilot_sync.contract import stream_chain
from autopilot_sync.desktop.apply import Cursor, StreamEvent

TRIMMED_NOTICE = "history trimmed — rebuilding"
"""What the UI and the headless output say while a stream rebuilds after a trim."""
EPOCH_NOTICE = "stream started over (new epoch) — rebuilding"
AHEAD_NOTICE = "host has less history than applied here — rebuilding"
FORK_NOTICE = "host history differs from the local copy — rebuilding"


def broken_notice(seq: int) -> str:
    """What a stream says when the host's own chain fails at `seq` a second time (nothing more is applied)."""
    return f"host history fails its hash chain at seq {seq} — stopped"


@dataclass(frozen=True, slots=True)
class StreamHead:
    """One `stream_head` row: the newest seq, the oldest seq still stored, the epoch and the chain values.

    `head_chain` is the chain value of `head_seq`, `floor_chain` that of `retained_from_seq - 1`; both empty from a
    host without chains.
    """

    stream_id: str
    head_seq: int
    retained_from_seq: int
    epoch: int
    head_chain: str = ""
    floor_chain: str = ""


class Verdict(enum.Enum):
    """What to do with a local cursor given the stream's head."""

    CURRENT = "current"
    """Resumable as it is."""
    ADOPT_EPOCH = "adopt_epoch"
    """Resumable; the cursor had no epoch yet (first sight of the stream) and takes the head's."""
    HISTORY_TRIMMED = "history_trimmed"
    """The checkpoint is below the retained floor: rebuild from the floor."""
    EPOCH_CHANGED = "epoch_changed"
    """The stream was reset, or the host set aside history, since the checkpoint was taken: rebuild from the floor."""
    CHECKPOINT_AHEAD = "checkpoint_ahead"
    """The checkpoint is above the host's head: the host lost history applied here. Rebuild from the floor."""
    CHAIN_MISMATCH = "chain_mismatch"
    """The host's chain value at the checkpoint (or an event's link to it) is not the local one: a fork."""

    @property
    def needs_rebuild(self) -> bool:
        """True for the verdicts that drop the local copy."""
        return self not in (Verdict.CURRENT, Verdict.ADOPT_EPOCH)

    @property
    def is_divergence(self) -> bool:
        """True when the host's history is not the one applied here (not a mere retention trim)."""
        return self in (Verdict.EPOCH_CHANGED, Verdict.CHECKPOINT_AHEAD, Verdict.CHAIN_MISMATCH)

    @property
    def notice(self) -> str:
        """What the UI and the headless output say while the rebuild this verdict caused runs."""
        return {
            Verdict.HISTORY_TRIMMED: TRIMMED_NOTICE,
            Verdict.EPOCH_CHANGED: EPOCH_NOTICE,
            Verdict.CHECKPOINT_AHEAD: AHEAD_NOTICE,
            Verdict.CHAIN_MISMATCH: FORK_NOTICE,
        }.get(self, "")


def judge(cursor: Cursor, head: StreamHead) -> Verdict:
    """Classify `cursor` against `head` (same stream)."""
    if cursor.stream_id != head.stream_id:
        raise ValueError(f"cursor of {cursor.stream_id!r} judged against the head of {head.stream_id!r}")
    if cursor.epoch not in (0, head.epoch):
        return Verdict.EPOCH_CHANGED
    if cursor.checkpoint > head.head_seq:
        return Verdict.CHECKPOINT_AHEAD
    if cursor.checkpoint < head.retained_from_seq - 1:
        return Verdict.HISTORY_TRIMMED
    if cursor.chain:
        if cursor.checkpoint == head.head_seq and head.head_chain and cursor.chain != head.head_chain:
            return Verdict.CHAIN_MISMATCH
        at_floor = cursor.checkpoint == head.retained_from_seq - 1
        if at_floor and head.floor_chain and cursor.chain != head.floor_chain:
            return Verdict.CHAIN_MISMATCH
    if cursor.epoch == 0:
        return Verdict.ADOPT_EPOCH
    return Verdict.CURRENT


def first_unlinked(cursor: Cursor, events: Sequence[StreamEvent]) -> StreamEvent | None:
    """The first of `events` (about to be applied, in seq order after the checkpoint) whose chain value does not
    link to the one before it; None when all link.

    Unknown values are not checked: an event without a chain (a host without chains) resets the check, and with no
    chain value at the checkpoint (nothing applied yet, a copy from before chains) the first event is taken as given.
    """
    prev = cursor.chain
    for event in events:
        if event.chain and prev:
            try:
                expected = stream_chain.event_link(prev, event)
            except stream_chain.ChainValueError:
                return event
            if event.chain != expected:
                return event
        prev = event.chain
    return None


def rebuilt_cursor(head: StreamHead) -> Cursor:
    """Where a rebuild restarts: just below the retained floor, in the head's epoch, at the floor's chain value."""
    return Cursor(head.stream_id, max(head.retained_from_seq - 1, 0), head.epoch, head.floor_chain)


@dataclass
class RebuildGuard:
    """Remembers which causes already led to a rebuild, so the same cause can never lead to two."""

    _done: dict[str, set[tuple[object, ...]]] = field(default_factory=dict)

    def allow(self, head: StreamHead, cause: tuple[object, ...] = ()) -> bool:
        """True the first time a rebuild is asked for this `(stream, epoch, retained_from_seq, *cause)`, then False.

        Trims and epoch changes are identified by the head alone; a checkpoint ahead of the head or a chain
        mismatch adds what was seen (the head's seq and chain, or the event that failed to link) as `cause`.
        """
        seen = self._done.setdefault(head.stream_id, set())
        key = (head.epoch, head.retained_from_seq, *cause)
        if key in seen:
            return False
        seen.add(key)
        return True

    def count(self, stream_id: str) -> int:
        """How many rebuilds of `stream_id` were allowed in this session."""
        return len(self._done.get(stream_id, ()))
