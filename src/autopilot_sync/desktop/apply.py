"""The apply engine: turns deliveries of a stream's events, in any order and with repeats, into an in-order apply.

Pure and synchronous (no SQLite, no SDK): `deliver` takes the stream's progress and a batch of events exactly as the
subscription handed them over, and returns what to apply now, what was a duplicate, and whether a gap stands between
the checkpoint and the next event seen. The sync layer persists `applied` and the new checkpoint in one transaction
and, on a gap, resubscribes from the checkpoint. The rules (DESIGN.md "Ordering and dedupe"):

- seq `n` is applied only right after `n - 1` (the checkpoint), so the applied history is `1, 2, 3, ...` with no hole;
- any seq `<= checkpoint` is a duplicate and dropped, whatever its payload;
- an event beyond `checkpoint + 1` waits in a bounded buffer until the hole closes, or until the resubscription
  from the checkpoint replays the missing events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

MAX_PENDING = 10_000
"""Most out-of-order events held per stream; beyond that the highest are dropped (the resubscribe replays them)."""


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One `sync_event` row as the desktop keeps it (timestamps in microseconds since the Unix epoch)."""

    stream_id: str
    seq: int
    idempotency_key: str
    kind: str
    payload: str
    payload_hash: str
    published_at_us: int
    committed_at_us: int
    epoch: int = 0
    chain: str = ""
    """The event's stream chain value (docs/protocol.md "Stream hash chain"); empty from a host without chains."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """How far a stream is applied locally: the checkpoint (last applied seq), its epoch and its chain value.

    `epoch == 0` means the host's epoch has not been seen yet (a stream never followed before). `chain` is the chain
    value at the checkpoint (of the last applied event, or the floor chain a rebuild started from); empty when not
    known yet (nothing applied, or a local copy from before chains).
    """

    stream_id: str
    checkpoint: int = 0
    epoch: int = 0
    chain: str = ""


@dataclass(frozen=True, slots=True)
class ApplyState:
    """A stream's cursor plus the events that arrived ahead of a hole, sorted by seq, each seq once."""

    cursor: Cursor
    pending: tuple[StreamEvent, ...] = ()

    @property
    def next_seq(self) -> int:
        """The only seq that can be applied next."""
        return self.cursor.checkpoint + 1


@dataclass(frozen=True, slots=True)
class Gap:
    """A hole: `expected_seq` is missing while `next_seen_seq` (> expected) already arrived."""

    expected_seq: int
    next_seen_seq: int


@dataclass(frozen=True, slots=True)
class ApplyOutcome:
    """What one delivery changed: the new state, the events to persist in order, duplicates dropped, any gap left."""

    state: ApplyState
    applied: tuple[StreamEvent, ...]
    duplicates: int
    gap: Gap | None

    @property
    def checkpoint(self) -> int:
        """The checkpoint after applying `applied`."""
        return self.state.cursor.checkpoint


def deliver(state: ApplyState, events: Iterable[StreamEvent]) -> ApplyOutcome:
    """Fold a delivery into `state`: apply every event that now continues the checkpoint, hold the rest.

    Events of another stream are a caller's bug (subscriptions are per stream) and raise ValueError.
    """
    stream_id = state.cursor.stream_id
    checkpoint = state.cursor.checkpoint
    held: dict[int, StreamEvent] = {event.seq: event for event in state.pending}
    duplicates = 0
    for event in events:
        if event.stream_id != stream_id:
            raise ValueError(f"event of stream {event.stream_id!r} delivered to the engine of {stream_id!r}")
        if event.seq <= checkpoint or event.seq in held:
            duplicates += 1
            continue
        held[event.seq] = event
    applied: list[StreamEvent] = []
    while checkpoint + 1 in held:
        checkpoint += 1
        applied.append(held.pop(checkpoint))
    pending = tuple(held[seq] for seq in sorted(held)[:MAX_PENDING])
    gap = Gap(checkpoint + 1, pending[0].seq) if pending else None
    chain = applied[-1].chain if applied else state.cursor.chain
    new_state = ApplyState(replace(state.cursor, checkpoint=checkpoint, chain=chain), pending)
    return ApplyOutcome(new_state, tuple(applied), duplicates, gap)


def restart_from(cursor: Cursor) -> ApplyState:
    """A fresh engine state at `cursor`, with nothing pending (after a rebuild, or when the desktop starts)."""
    return ApplyState(cursor)
