"""The outbox for asyncio: every SQLite call on one dedicated thread, in submission order.

Why one thread: each append ends in an fsync (`synchronous=FULL`), which must not stall the event loop, and a single
writer thread makes the order of appends, publish marks and dead letters the order they were submitted in, with no
SQLite lock contention at all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from autopilot_sync.runtime.outbox import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    AppendResult,
    DeadLetter,
    Outbox,
    StoredEvent,
    StreamBacklog,
)
from autopilot_sync.runtime.streams import NewEvent

T = TypeVar("T")

OUTBOX_FILE = "outbox.sqlite3"


def now_us() -> int:
    """Wall-clock microseconds since the Unix epoch (the unit of `Timestamp`)."""
    return time.time_ns() // 1000


class RuntimeStore:
    """Async facade of `Outbox`; `changed` is set after every append and replay so the publisher wakes at once."""

    def __init__(self, data_dir: Path, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runtime-outbox")
        self.outbox = Outbox(data_dir / OUTBOX_FILE, max_payload_bytes)
        self.changed = asyncio.Event()

    async def _run(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def append(self, events: Sequence[NewEvent], request_id: str | None) -> AppendResult:
        """Durably append (see `Outbox.append`) and wake the publisher."""
        result = await self._run(lambda: self.outbox.append(events, now_us(), request_id))
        self.changed.set()
        return result

    async def pending_streams(self) -> list[str]:
        """Streams the publisher may work on."""
        return await self._run(self.outbox.pending_streams)

    async def next_batch(self, stream_id: str, limit: int) -> list[StoredEvent]:
        """The next unpublished events of one stream, in order."""
        return await self._run(lambda: self.outbox.next_batch(stream_id, limit))

    async def mark_published(self, stream_id: str, through_seq: int) -> list[int]:
        """Drop published outbox rows; their append times (for the latency histogram)."""
        return await self._run(lambda: self.outbox.mark_published(stream_id, through_seq))

    async def requeue(self, stream_id: str) -> int:
        """Queue a stream's published events again from seq 1 (see `Outbox.requeue`) and wake the publisher."""
        queued = await self._run(lambda: self.outbox.requeue(stream_id, now_us()))
        self.changed.set()
        return queued

    async def published_streams(self) -> list[str]:
        """Streams with events the host acknowledged."""
        return await self._run(self.outbox.published_streams)

    async def dead_letter(self, stream_id: str, seq: int, retry_class: str, reason: str) -> DeadLetter:
        """Park a stream at `seq` with the reason."""
        return await self._run(lambda: self.outbox.dead_letter(stream_id, seq, retry_class, reason, now_us()))

    async def dead_letters(self, include_replayed: bool = False) -> list[DeadLetter]:
        """Dead letters, oldest first."""
        return await self._run(lambda: self.outbox.dead_letters(include_replayed))

    async def replay(self, stream_id: str | None) -> list[DeadLetter]:
        """Reopen dead-lettered streams and wake the publisher."""
        rows = await self._run(lambda: self.outbox.replay(stream_id, now_us()))
        self.changed.set()
        return rows

    async def backlog(self) -> list[StreamBacklog]:
        """Per-stream head, published seq and backlog."""
        return await self._run(self.outbox.backlog)

    async def close(self) -> None:
        """Finish queued calls, then close the database."""
        await self._run(self.outbox.close)
        self._executor.shutdown(wait=True)
