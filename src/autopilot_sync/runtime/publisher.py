"""The drain loop: each stream's outbox published in seq order, in batches, with the retry classes of `retry.py`.

One task per stream with a backlog, so head-of-line blocking is per stream: a stream waiting out a backoff or
parked on a dead letter never delays another. Within a stream there is at most one call in flight, and the next
batch starts where the host's acknowledged commit ended, so the host receives every stream gap-free and in order.
Batches of concurrent streams go to the host together, as one call, through `coalesce.py`; a refused combined call
is split there, so each stream still gets its own answer and its own retry class below.

The publisher never talks to the host itself: a `HostLink` (the client SDK adapter in `hostlink.py`, or a test
double in unit tests) makes the calls and reduces every failure to a `PublishFailure`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from autopilot_sync.backoff import Backoff
from autopilot_sync.runtime.coalesce import CoalesceLimits, Coalescer
from autopilot_sync.runtime.head_reads import HeadReads
from autopilot_sync.runtime.metrics import RuntimeMetrics, stream_family
from autopilot_sync.runtime.outbox import StoredEvent
from autopilot_sync.runtime.retry import LinkError, PublishFailure, RetryClass, classify, is_outcome_unknown
from autopilot_sync.runtime.store import RuntimeStore, now_us

log = logging.getLogger(__name__)


class HostLink(Protocol):
    """What the publisher needs from the host: append a batch, read a stream's head, refresh its credentials."""

    async def append(self, events: Sequence[StoredEvent]) -> None:
        """Call `append_sync_events` with `events` (per stream consecutive seqs, possibly of several streams, as the
        coalescer joins them); LinkError when not committed."""

    @property
    def sessions(self) -> int:
        """How many sessions with the host were opened so far: each new one may face a new database incarnation."""

    async def stream_head(self, stream_id: str) -> int | None:
        """The host's `head_seq` of a stream (None when the host holds no such stream); LinkError when unreadable."""

    async def stream_heads(self, stream_ids: Sequence[str]) -> Mapping[str, int | None]:
        """The heads of these streams, None for one the host holds none of (bounded queries); a stream the answer
        cannot decide is left out and read alone with `stream_head`; LinkError when unreadable."""

    async def held_streams(self, stream_ids: Sequence[str]) -> set[str]:
        """Which of these streams the host holds a head for (bounded queries); LinkError when unreadable."""

    async def refresh_auth(self) -> None:
        """Get a fresh token and reconnect with it; LinkError when no token can be had."""


PUBLISH_BACKOFF = Backoff(base=0.05, cap=5.0)
"""Delays between publish attempts of one stream (the cap is `AUTOPILOT_SYNC_RUNTIME_RETRY_CAP_SECONDS`)."""


@dataclass(frozen=True, slots=True)
class PublisherConfig:
    """How the publisher batches, backs off and bounds its concurrency.

    `batch_size` bounds one stream's batch; `coalesce` bounds the call that joins concurrent streams' batches and
    the calls in flight on the link; `max_in_flight` bounds the streams reading their head at once.
    """

    batch_size: int = 100
    backoff: Backoff = PUBLISH_BACKOFF
    poll_seconds: float = 1.0
    max_in_flight: int = 32
    coalesce: CoalesceLimits = field(default_factory=CoalesceLimits)


class Publisher:
    """Drains every stream's outbox to the host until stopped."""

    def __init__(
        self, store: RuntimeStore, link: HostLink, metrics: RuntimeMetrics, config: PublisherConfig | None = None
    ) -> None:
        self.store = store
        self.link = link
        self.metrics = metrics
        self.config = config or PublisherConfig()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._in_flight = asyncio.Semaphore(self.config.max_in_flight)
        self._calls: Coalescer[StoredEvent] = Coalescer(link.append, self.config.coalesce, metrics)
        #: Head reads of concurrent streams (after a combined call's unknown outcome, all of its streams) joined.
        self._heads = HeadReads(link.stream_heads, link.stream_head)
        self._uncertain: set[str] = set()
        self._first_seen: set[str] = set()
        self._audited_session: int | None = None
        self._audit: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Start a drain task for every stream with a backlog; wake on appends, replays and finished drains."""
        try:
            while True:
                self.store.changed.clear()
                self._audit_new_session()
                for stream_id in await self.store.pending_streams():
                    if stream_id not in self._tasks:
                        self._start(stream_id)
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel that lands as the event is
                # set, and the publisher then never stops (the runtime's stop, and tests, hung on it).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.config.poll_seconds):
                        await self.store.changed.wait()
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Cancel every drain task (an unanswered call is simply sent again after restart)."""
        tasks = list(self._tasks.values())
        if self._audit is not None:
            tasks.append(self._audit)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self._calls.close()
        await self._heads.close()

    def _audit_new_session(self) -> None:
        """At start and after every reconnect, check once that the host still holds what was published to it."""
        if self._audited_session == self.link.sessions or (self._audit is not None and not self._audit.done()):
            return
        self._audit = asyncio.create_task(self._find_lost_streams(), name="publish audit")

    async def _find_lost_streams(self) -> None:
        """Queue again every published stream the host no longer holds (a delete-data publish deleted them all).

        One query lists the heads the host holds; a stream missing from it is asked for by itself (which records its
        readers again: a new incarnation lost those too) before it is queued again from seq 1. A failed check is
        tried again on the next wake-up.
        """
        published = await self.store.published_streams()
        if not published:
            self._audited_session = self.link.sessions
            return
        try:
            held = await self.link.held_streams(published)
            session = self.link.sessions
            for stream_id in published:
                if stream_id not in held and await self.link.stream_head(stream_id) is None:
                    await self._republish(stream_id)
        except LinkError as exc:
            log.info("check of the host's streams postponed: %s", exc)
            await asyncio.sleep(self.config.backoff.delay(0))
            return
        self._audited_session = session

    async def _republish(self, stream_id: str) -> int:
        """The host holds nothing of a stream the runtime published: send the whole stream again from seq 1."""
        queued = await self.store.requeue(stream_id)
        if queued:
            self.metrics.republished.inc(queued)
            log.warning(
                "the host holds nothing of %s (its data was deleted: a new database incarnation): "
                "publishing its %d acknowledged events again from seq 1",
                stream_id,
                queued,
            )
        return queued

    def _start(self, stream_id: str) -> None:
        if stream_id not in self._first_seen:
            self._first_seen.add(stream_id)
            self._uncertain.add(stream_id)  # after a start, what the host holds of this stream is unknown
        task = asyncio.create_task(self._drain(stream_id), name=f"publish {stream_id}")
        self._tasks[stream_id] = task
        task.add_done_callback(lambda _task: self._finished(stream_id))

    def _finished(self, stream_id: str) -> None:
        task = self._tasks.pop(stream_id, None)
        if task is not None and not task.cancelled() and task.exception() is not None:
            log.error("publisher of %s crashed", stream_id, exc_info=task.exception())
        self.store.changed.set()

    async def _drain(self, stream_id: str) -> None:
        attempt = 0
        refreshed = False
        limit = self.config.batch_size
        while True:
            batch = await self.store.next_batch(stream_id, limit)
            if not batch:
                return
            try:
                if stream_id in self._uncertain:
                    async with self._in_flight:
                        await self._count_duplicates(stream_id, batch)
                await self._calls.append(batch)
            except LinkError as exc:
                failure = exc.failure
                retry_class = classify(failure)
                self.metrics.failures.labels(retry_class=retry_class.value).inc()
                if retry_class is RetryClass.TRANSIENT:
                    if is_outcome_unknown(failure):
                        self._uncertain.add(stream_id)
                    await asyncio.sleep(self.config.backoff.delay(attempt))
                    attempt += 1
                    continue
                if retry_class is RetryClass.AUTH and not refreshed:
                    refreshed = True
                    await self._refresh()
                    continue
                if retry_class is RetryClass.SEQUENCE_CONFLICT:
                    if await self._reconcile(stream_id, batch, failure):
                        attempt = 0
                        continue
                    return
                if len(batch) > 1:
                    limit = 1  # find the one event the host refuses; the ones before it are fine
                    continue
                await self._dead_letter(batch[0], retry_class, failure)
                return
            await self._published(stream_id, batch)
            self._uncertain.discard(stream_id)
            attempt = 0
            refreshed = False
            limit = self.config.batch_size

    async def _count_duplicates(self, stream_id: str, batch: Sequence[StoredEvent]) -> None:
        """After an unknown outcome, ask the head first: events it covers are sent again but were already there.
        The streams of a combined call whose outcome was lost all ask at once: one query (`head_reads.py`)."""
        head = await self._heads.head(stream_id) or 0
        covered = sum(1 for event in batch if event.seq <= head)
        if covered:
            self.metrics.duplicates.inc(covered)

    async def _refresh(self) -> None:
        try:
            await self.link.refresh_auth()
        except LinkError as exc:
            log.warning("token refresh failed: %s", exc)

    async def _reconcile(self, stream_id: str, batch: Sequence[StoredEvent], failure: PublishFailure) -> bool:
        """`sequence_conflict`: publish what the host's head covers; a host without the stream gets it all again
        from seq 1 (a new database incarnation); a head behind ours is a dead letter."""
        try:
            found = await self._heads.head(stream_id)
        except LinkError as exc:
            log.info("reconcile of %s postponed: %s", stream_id, exc)
            await asyncio.sleep(self.config.backoff.delay(0))
            return True
        if found is None and batch[0].seq > 1 and await self._republish(stream_id):
            return True
        head = found or 0
        covered = [event for event in batch if event.seq <= head]
        if covered:
            self.metrics.duplicates.inc(len(covered))
            await self._published(stream_id, covered)
            return True
        reason = (
            f"{failure.message}; the host's head is {head} but the runtime published this stream through "
            f"{batch[0].seq - 1}: the host lost or reset events the runtime had published"
        )
        await self._dead_letter(batch[0], RetryClass.SEQUENCE_CONFLICT, PublishFailure(failure.kind, reason))
        return False

    async def _published(self, stream_id: str, events: Sequence[StoredEvent]) -> None:
        appended_at = await self.store.mark_published(stream_id, events[-1].seq)
        now = now_us()
        for micros in appended_at:
            self.metrics.publish_latency.observe(max(0, now - micros) / 1e6)
        self.metrics.published.labels(family=stream_family(stream_id)).inc(len(appended_at))
        self.metrics.batch_size.observe(len(events))

    async def _dead_letter(self, event: StoredEvent, retry_class: RetryClass, failure: PublishFailure) -> None:
        reason = f"{failure.kind.value}: {failure.message}"
        log.error("dead-lettered %s#%d (%s): %s", event.stream_id, event.seq, retry_class.value, reason)
        await self.store.dead_letter(event.stream_id, event.seq, retry_class.value, reason)
        self.metrics.dead_lettered.labels(retry_class=retry_class.value).inc()
