"""Test doubles for the runtime's unit tests only: a host link that applies the sync module's append rules in memory.

`HostLinkDouble` is not a host: it has no log, no protocol and no process. It exists so the publisher's retry paths
(lost answers, transient failures, refusals, sequence conflicts) can be driven deterministically; the process tests
use the real host, control and runtime.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from autopilot_sync.contract.canonical import payload_hash
from autopilot_sync.runtime.outbox import StoredEvent
from autopilot_sync.runtime.retry import FailureKind, LinkError, PublishFailure

#: Decides, per call, whether to inject a fault: (call number, batch) -> fault or None.
FaultPlan = Callable[[int, Sequence[StoredEvent]], "Fault | None"]


@dataclass(frozen=True)
class Fault:
    """A failure to inject: `after_commit` loses the answer of a batch that did commit (the ambiguous case)."""

    failure: PublishFailure
    after_commit: bool = False


@dataclass
class HostLinkDouble:
    """In-memory streams with the module's rules: same key + same hash is a duplicate, else expected_seq = head + 1."""

    faults: FaultPlan = lambda _number, _batch: None
    streams: dict[str, list[StoredEvent]] = field(default_factory=dict)
    trimmed: dict[str, int] = field(default_factory=dict)
    calls: int = 0
    refreshes: int = 0
    delay: float = 0.0
    #: sessions "opened": a test bumps it to stand for a reconnect
    sessions: int = 1
    #: head queries answered: one per `stream_head`, one per `stream_heads` (of any number of streams)
    head_queries: int = 0

    def head(self, stream_id: str) -> int:
        return len(self.streams.get(stream_id, [])) + self.trimmed.get(stream_id, 0)

    async def append(self, events: Sequence[StoredEvent]) -> None:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        fault = self.faults(self.calls, events)
        if fault is not None and not fault.after_commit:
            raise LinkError(fault.failure)
        staged = {stream: list(rows) for stream, rows in self.streams.items()}
        for event in events:
            rows = staged.setdefault(event.stream_id, [])
            if payload_hash(event.payload) != event.payload_hash:
                raise LinkError(PublishFailure(FailureKind.REDUCER_ERROR, "payload_hash_mismatch: double"))
            existing = next((row for row in rows if row.idempotency_key == event.idempotency_key), None)
            if existing is not None:
                if existing.payload_hash == event.payload_hash:
                    continue
                raise LinkError(PublishFailure(FailureKind.REDUCER_ERROR, "idempotency_conflict: double"))
            head = len(rows) + self.trimmed.get(event.stream_id, 0)
            if event.seq != head + 1:
                raise LinkError(
                    PublishFailure(
                        FailureKind.REDUCER_ERROR,
                        f"sequence_conflict: stream {event.stream_id} expected_seq={event.seq} head_seq={head}",
                    )
                )
            rows.append(event)
        self.streams = staged
        if fault is not None:
            raise LinkError(fault.failure)

    async def stream_head(self, stream_id: str) -> int | None:
        self.head_queries += 1
        await self._round_trip()
        return self.head(stream_id) if self.holds(stream_id) else None

    async def stream_heads(self, stream_ids: Sequence[str]) -> dict[str, int | None]:
        self.head_queries += 1
        await self._round_trip()
        return {stream_id: self.head(stream_id) if self.holds(stream_id) else None for stream_id in stream_ids}

    async def _round_trip(self) -> None:
        """A query takes `delay` too, as over a socket: the reads asked meanwhile join the next one (head_reads.py)."""
        if self.delay:
            await asyncio.sleep(self.delay)

    async def held_streams(self, stream_ids: Sequence[str]) -> set[str]:
        return {stream_id for stream_id in stream_ids if self.holds(stream_id)}

    def holds(self, stream_id: str) -> bool:
        """Whether the "host" has the stream at all (a head row), even with every event trimmed."""
        return bool(self.streams.get(stream_id)) or stream_id in self.trimmed

    def delete_data(self) -> None:
        """Forget every stream, like a delete-data publish (a new incarnation), and "reconnect"."""
        self.streams.clear()
        self.trimmed.clear()
        self.sessions += 1

    async def refresh_auth(self) -> None:
        self.refreshes += 1

    def trim(self, stream_id: str, count: int) -> None:
        """Forget the first `count` events of a stream (like `trim_stream`): their keys are gone too."""
        rows = self.streams[stream_id]
        self.streams[stream_id] = rows[count:]
        self.trimmed[stream_id] = self.trimmed.get(stream_id, 0) + count
