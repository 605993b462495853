"""Coalescing: concurrent streams' batches joined into one `append_sync_events` call per host link.

Why: the host's cost of a call is mostly fixed (framing, dispatch, a transaction, a log record, an fsync), so a
runtime with many streams each sending its own one-event calls saturates the host at a fraction of the events a
few combined calls carry (docs/performance.md "Round 6 — fanin2"). `append_sync_events` takes events of several
streams in one call, atomically, so the runtime puts them together:

- every stream's drain task hands its batch to `Coalescer.append` and waits for its own answer;
- while `max_calls` calls are in flight on the link, batches wait in a queue; when a call answers (or at once while
  fewer are in flight) everything queued goes as ONE call, bounded by `max_events` (the module's
  `max_batch_events`) and `max_bytes` (under the host's message size limit); a batch over the bounds on its own
  still goes alone, as before;
- while the host is behind (the last call took longer than `behind_after` to be answered: calls queue there), a
  second call starts only when a full call waits: the waiting streams join the next call instead of queueing at the
  host as small calls, whose fixed and per-stream costs the host then pays again for a few events each (docs/
  performance.md "Round 7 — fanin3"). A host that answers fast keeps `max_calls` in flight, so a batch that comes
  while a call is out is not held back by a round trip;
- a stream appears at most once per call, and the publisher keeps at most one batch per stream in flight, so
  per-stream order holds;
- a combined call is atomic: when the host refuses it (one stream's gap, duplicate key, revoked claim, a panic…),
  nothing of it committed, so each stream's part is sent again on its own and every stream gets its OWN answer:
  its retry, reconcile or dead letter is decided by the publisher exactly as for a call of its own. A failure of
  the link itself (network, timeout, token) says nothing about any one stream and is every stream's answer: a
  timed-out call may have committed whole, and parts sent again alone at once would multiply the calls into a host
  already too slow to answer one; each stream retries on its own backoff (docs/runtime.md "Coalescing").

Generic in the event type (`Coalescable`) so the bench's producers coalesce through this same class.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from autopilot_sync.runtime.retry import FailureKind, LinkError, PublishFailure


class Coalescable(Protocol):
    """What the coalescer reads of an event: its stream (one part per stream per call) and its size."""

    @property
    def stream_id(self) -> str: ...

    @property
    def idempotency_key(self) -> str: ...

    @property
    def payload(self) -> str: ...


E = TypeVar("E", bound=Coalescable)

#: Bytes one event adds to a call besides its payload, key and stream id (hash, kind, seq, timestamp, framing).
EVENT_OVERHEAD_BYTES = 160

#: Refusals that come from the host having run the call: some part of it was refused, which one is not known.
_SPLIT_KINDS = frozenset({FailureKind.REDUCER_ERROR, FailureKind.INTERNAL_ERROR})


def event_bytes(event: Coalescable) -> int:
    """An upper estimate of what one event adds to a call's message (characters count as bytes: ids are ASCII)."""
    return len(event.payload) + len(event.idempotency_key) + len(event.stream_id) + EVENT_OVERHEAD_BYTES


def refused_in_part(failure: PublishFailure) -> bool:
    """Whether a combined call's failure may belong to one of its streams only (then each part is sent alone)."""
    return failure.kind in _SPLIT_KINDS


class CallObserver(Protocol):
    """Where the coalescer reports each call it sends and each combined call it splits (the runtime's metrics)."""

    def call_sent(self, events: int, streams: int) -> None:
        """One `append_sync_events` call went out with `events` events of `streams` streams."""

    def call_split(self) -> None:
        """A combined call was refused and its streams' parts are sent one by one."""

    def host_behind(self, behind: bool) -> None:
        """The coalescer now judges the host behind (or no longer): told when that changes."""


class _NoObserver:
    def call_sent(self, events: int, streams: int) -> None:
        pass

    def call_split(self) -> None:
        pass

    def host_behind(self, behind: bool) -> None:
        pass


@dataclass(frozen=True, slots=True)
class CoalesceLimits:
    """Bounds of one combined call and of the calls in flight on one link."""

    max_events: int = 1000
    """Most events one call carries (the module's `max_batch_events`)."""
    max_bytes: int = 4 * 1024 * 1024
    """Most estimated bytes one call carries (well under the host's `max_message_bytes`)."""
    max_calls: int = 2
    """Calls in flight at once on the link: one answering while the next fills."""
    behind_after: float = 0.05
    """Seconds: a call answered later than this says the host is behind; until a call is answered sooner, a second
    call starts only when a full call (`max_events` or `max_bytes`) waits. A healthy host answers in a few ms."""


@dataclass(eq=False, slots=True)
class _Part(Generic[E]):
    """One stream's batch waiting for its answer."""

    batch: Sequence[E]
    answer: asyncio.Future[None]
    size: int = field(default=0)


class Coalescer(Generic[E]):
    """Joins the batches of concurrent streams into as few `send` calls as the bounds allow.

    `send(events)` makes one call and raises `LinkError` unless every event of it committed.
    """

    def __init__(
        self,
        send: Callable[[Sequence[E]], Awaitable[None]],
        limits: CoalesceLimits | None = None,
        observer: CallObserver | None = None,
    ) -> None:
        self._send = send
        self.limits = limits or CoalesceLimits()
        if self.limits.max_events < 1 or self.limits.max_calls < 1:
            raise ValueError(f"coalesce limits must be at least 1: {self.limits}")
        self._observer: CallObserver = observer or _NoObserver()
        self._queue: deque[_Part[E]] = deque()
        self._calls: set[asyncio.Task[None]] = set()
        #: Events and estimated bytes in `_queue` (a cancelled batch counts until `_take` drops it).
        self._queued_events = self._queued_bytes = 0
        #: Whether the last call answered took longer than `limits.behind_after`.
        self._behind = False

    async def append(self, batch: Sequence[E]) -> None:
        """Publish one stream's batch (consecutive seqs of one stream) in the next call; LinkError unless committed.

        Cancelling the caller takes its batch out of the queue; a batch already sent is simply left to its call
        (its outcome is then unknown to the caller, as with any cancelled call).
        """
        if not batch:
            return
        part = _Part(batch, asyncio.get_running_loop().create_future(), sum(event_bytes(e) for e in batch))
        self._queue.append(part)
        self._queued_events += len(batch)
        self._queued_bytes += part.size
        self._dispatch()
        await part.answer  # a cancel cancels the answer too: still queued, `_take` skips it; in flight, it is dropped

    async def close(self) -> None:
        """Cancel the calls in flight and every waiting batch (the runtime is stopping; the outbox keeps them)."""
        for part in self._queue:
            part.answer.cancel()
        self._queue.clear()
        self._queued_events = self._queued_bytes = 0
        calls = list(self._calls)
        for task in calls:
            task.cancel()
        for task in calls:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def waiting(self) -> int:
        """Batches queued for the next call."""
        return sum(1 for part in self._queue if not part.answer.done())

    @property
    def behind(self) -> bool:
        """Whether the host is behind: the last call answered took longer than `limits.behind_after`."""
        return self._behind

    def _dispatch(self) -> None:
        while len(self._calls) < self._slots():
            parts = self._take()
            if not parts:
                return
            task = asyncio.create_task(self._call(parts), name="coalesced append")
            self._calls.add(task)
            task.add_done_callback(self._call_done)

    def _call_done(self, task: asyncio.Task[None]) -> None:
        self._calls.discard(task)
        self._dispatch()

    def _slots(self) -> int:
        """Calls that may be in flight now: one while the host is behind, unless a full call waits."""
        limits = self.limits
        if self._behind and self._queued_events < limits.max_events and self._queued_bytes < limits.max_bytes:
            return 1
        return limits.max_calls

    def _take(self) -> list[_Part[E]]:
        """The next call's parts: queued batches in order while they fit, one per stream; the first always goes."""
        taken: list[_Part[E]] = []
        streams: set[str] = set()
        deferred: list[_Part[E]] = []
        events = size = 0
        while self._queue:
            part = self._queue[0]
            if part.answer.done():  # its caller was cancelled while it waited
                self._pop()
                continue
            stream_id = part.batch[0].stream_id
            if taken and (
                events + len(part.batch) > self.limits.max_events or size + part.size > self.limits.max_bytes
            ):
                break
            self._pop()
            if stream_id in streams:
                deferred.append(part)  # a second batch of a stream waits for the first's answer
                continue
            taken.append(part)
            streams.add(stream_id)
            events += len(part.batch)
            size += part.size
        self._queue.extendleft(reversed(deferred))
        for part in deferred:
            self._queued_events += len(part.batch)
            self._queued_bytes += part.size
        return taken

    def _pop(self) -> None:
        part = self._queue.popleft()
        self._queued_events -= len(part.batch)
        self._queued_bytes -= part.size

    async def _call(self, parts: list[_Part[E]]) -> None:
        events = [event for part in parts for event in part.batch]
        self._observer.call_sent(len(events), len(parts))
        try:
            await self._timed_send(events)
        except LinkError as exc:
            if len(parts) > 1 and refused_in_part(exc.failure):
                self._observer.call_split()
                await asyncio.gather(*(self._alone(part) for part in parts))
                return
            for part in parts:
                _answer(part, LinkError(exc.failure))
            return
        except asyncio.CancelledError:
            for part in parts:
                if not part.answer.done():
                    part.answer.cancel()
            raise
        except Exception as exc:  # a defect below: every waiting stream hears of it rather than hanging
            for part in parts:
                _answer(part, exc)
            return
        for part in parts:
            _answer(part, None)

    async def _timed_send(self, events: Sequence[E]) -> None:
        """`send`, noting from how long its answer took whether the host is behind."""
        loop = asyncio.get_running_loop()
        sent = loop.time()
        try:
            await self._send(events)
        finally:
            behind = loop.time() - sent > self.limits.behind_after
            if behind != self._behind:
                self._behind = behind
                self._observer.host_behind(behind)

    async def _alone(self, part: _Part[E]) -> None:
        """Send one stream's part of a refused combined call by itself: its own answer, whatever its neighbours'."""
        if part.answer.done():
            return
        self._observer.call_sent(len(part.batch), 1)
        try:
            await self._send(part.batch)
        except LinkError as exc:
            _answer(part, exc)
            return
        except asyncio.CancelledError:
            if not part.answer.done():
                part.answer.cancel()
            raise
        except Exception as exc:
            _answer(part, exc)
            return
        _answer(part, None)


def _answer(part: _Part[E], error: BaseException | None) -> None:
    if part.answer.done():
        return
    if error is None:
        part.answer.set_result(None)
    else:
        part.answer.set_exception(error)
