"""Stale cursor decisions: is a local checkpoint still resumable against the stream's head, or must it rebuild?

Pure. The host keeps events from `retained_from_seq` on; a checkpoint below `retained_from_seq - 1` would need events
that no longer exist, and a changed `epoch` means the stream started over (`reset_stream`). Either way a partial
replay would silently leave the local copy wrong, so the desktop says "history trimmed — rebuilding", drops its copy
of the stream and starts again from the retained floor (DESIGN.md "Stale cursor").

Bounded: a rebuild is tied to one `(epoch, retained_from_seq)` of the head, and `RebuildGuard` refuses a second
rebuild for the same pair. After a rebuild the cursor sits at `retained_from_seq - 1` in the head's epoch, which
`judge` calls current, so only a new trim or reset on the host can cause another one: never a loop.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from autopilot_sync.desktop.apply import Cursor

TRIMMED_NOTICE = "history trimmed — rebuilding"
"""What the UI and the headless output say while a stream rebuilds."""


@dataclass(frozen=True, slots=True)
class StreamHead:
    """One `stream_head` row: the newest seq, the oldest seq still stored, and the stream's epoch."""

    stream_id: str
    head_seq: int
    retained_from_seq: int
    epoch: int


class Verdict(enum.Enum):
    """What to do with a local cursor given the stream's head."""

    CURRENT = "current"
    """Resumable as it is."""
    ADOPT_EPOCH = "adopt_epoch"
    """Resumable; the cursor had no epoch yet (first sight of the stream) and takes the head's."""
    HISTORY_TRIMMED = "history_trimmed"
    """The checkpoint is below the retained floor: rebuild from the floor."""
    EPOCH_CHANGED = "epoch_changed"
    """The stream was reset since the checkpoint was taken: rebuild from the floor."""

    @property
    def needs_rebuild(self) -> bool:
        """True for the verdicts that drop the local copy."""
        return self in (Verdict.HISTORY_TRIMMED, Verdict.EPOCH_CHANGED)


def judge(cursor: Cursor, head: StreamHead) -> Verdict:
    """Classify `cursor` against `head` (same stream)."""
    if cursor.stream_id != head.stream_id:
        raise ValueError(f"cursor of {cursor.stream_id!r} judged against the head of {head.stream_id!r}")
    if cursor.epoch not in (0, head.epoch):
        return Verdict.EPOCH_CHANGED
    if cursor.checkpoint < head.retained_from_seq - 1:
        return Verdict.HISTORY_TRIMMED
    if cursor.epoch == 0:
        return Verdict.ADOPT_EPOCH
    return Verdict.CURRENT


def rebuilt_cursor(head: StreamHead) -> Cursor:
    """Where a rebuild restarts: just below the retained floor, in the head's epoch."""
    return Cursor(head.stream_id, max(head.retained_from_seq - 1, 0), head.epoch)


@dataclass
class RebuildGuard:
    """Remembers which heads already caused a rebuild, so the same head can never cause two."""

    _done: dict[str, set[tuple[int, int]]] = field(default_factory=dict)

    def allow(self, head: StreamHead) -> bool:
        """True the first time a rebuild is asked for this `(stream, epoch, retained_from_seq)`, then False."""
        seen = self._done.setdefault(head.stream_id, set())
        key = (head.epoch, head.retained_from_seq)
        if key in seen:
            return False
        seen.add(key)
        return True

    def count(self, stream_id: str) -> int:
        """How many rebuilds of `stream_id` were allowed in this session."""
        return len(self._done.get(stream_id, ()))
