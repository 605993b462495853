"""Unit tests of the coalescer (`runtime/coalesce.py`) with a recording send double standing for the host link.

The double is no host: it records each call's events and answers as the test plans. The process tests
(`test_runtime_coalescing.py`) prove the same promises against a real host, control and runtime.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest

from autopilot_sync.runtime.coalesce import CoalesceLimits, Coalescer
from autopilot_sync.runtime.retry import (
    FailureKind,
    LinkError,
    PublishFailure,
    RetryClass,
    classify,
    is_outcome_unknown,
)


@dataclass(frozen=True)
class Ev:
    """An event as the coalescer reads it."""

    stream_id: str
    seq: int
    payload: str = "{}"

    @property
    def idempotency_key(self) -> str:
        return f"{self.stream_id}:{self.seq}"


@dataclass
class SendDouble:
    """Records every call; `refuse(events)` plans a failure; `gate` holds calls until the test opens it."""

    refuse: Callable[[Sequence[Ev]], PublishFailure | None] = lambda _events: None
    gate: asyncio.Event | None = None
    calls: list[list[Ev]] = field(default_factory=list)

    async def __call__(self, events: Sequence[Ev]) -> None:
        self.calls.append(list(events))
        if self.gate is not None:
            await self.gate.wait()
        failure = self.refuse(events)
        if failure is not None:
            raise LinkError(failure)


@dataclass
class ObserverDouble:
    sent: list[tuple[int, int]] = field(default_factory=list)
    splits: int = 0
    behind: list[bool] = field(default_factory=list)

    def call_sent(self, events: int, streams: int) -> None:
        self.sent.append((events, streams))

    def call_split(self) -> None:
        self.splits += 1

    def host_behind(self, behind: bool) -> None:
        self.behind.append(behind)


def batch(stream: str, first: int, count: int = 1, payload: str = "{}") -> list[Ev]:
    return [Ev(stream, seq, payload) for seq in range(first, first + count)]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_coalescer_joins_batches_queued_behind_a_call_in_flight_into_one_call() -> None:
    send = SendDouble(gate=asyncio.Event())
    observer = ObserverDouble()
    coalescer = Coalescer(send, CoalesceLimits(max_calls=1), observer)
    first = asyncio.create_task(coalescer.append(batch("s0", 1)))
    await settle()
    rest = [asyncio.create_task(coalescer.append(batch(f"s{i}", 1, 2))) for i in range(1, 6)]
    await settle()
    assert len(send.calls) == 1 and coalescer.waiting == 5
    send.gate.set()
    await asyncio.gather(first, *rest)
    assert [len(call) for call in send.calls] == [1, 10]
    assert [e.stream_id for e in send.calls[1]] == [f"s{i}" for i in range(1, 6) for _ in range(2)]
    assert observer.sent == [(1, 1), (10, 5)] and observer.splits == 0


async def test_coalescer_call_holds_at_most_max_events_and_max_bytes_and_an_oversized_batch_goes_alone() -> None:
    send = SendDouble(gate=asyncio.Event())
    coalescer = Coalescer(send, CoalesceLimits(max_events=5, max_bytes=2_000, max_calls=1))
    blocker = asyncio.create_task(coalescer.append(batch("b", 1)))
    await settle()
    waiting = [asyncio.create_task(coalescer.append(batch(f"s{i}", 1, 2))) for i in range(4)]
    big = asyncio.create_task(coalescer.append(batch("big", 1, 1, payload="x" * 5_000)))
    await settle()
    send.gate.set()
    await asyncio.gather(blocker, *waiting, big)
    assert [[e.stream_id for e in call] for call in send.calls] == [
        ["b"],
        ["s0", "s0", "s1", "s1"],
        ["s2", "s2", "s3", "s3"],
        ["big"],
    ]


async def test_coalescer_never_puts_two_batches_of_one_stream_in_one_call() -> None:
    send = SendDouble(gate=asyncio.Event())
    coalescer = Coalescer(send, CoalesceLimits(max_calls=1))
    blocker = asyncio.create_task(coalescer.append(batch("b", 1)))
    await settle()
    tasks = [
        asyncio.create_task(coalescer.append(batch("a", 1))),
        asyncio.create_task(coalescer.append(batch("a", 2))),
        asyncio.create_task(coalescer.append(batch("c", 1))),
    ]
    await settle()
    send.gate.set()
    await asyncio.gather(blocker, *tasks)
    assert [[(e.stream_id, e.seq) for e in call] for call in send.calls] == [
        [("b", 1)],
        [("a", 1), ("c", 1)],
        [("a", 2)],
    ]


async def test_coalescer_refused_combined_call_is_split_and_each_stream_gets_its_own_answer() -> None:
    def refuse(events: Sequence[Ev]) -> PublishFailure | None:
        if any(e.stream_id == "bad" for e in events):
            return PublishFailure(FailureKind.REDUCER_ERROR, "idempotency_conflict: key bad:1 was committed")
        return None

    send = SendDouble(refuse=refuse, gate=asyncio.Event())
    observer = ObserverDouble()
    coalescer = Coalescer(send, CoalesceLimits(max_calls=1), observer)
    blocker = asyncio.create_task(coalescer.append(batch("b", 1)))
    await settle()
    good = [asyncio.create_task(coalescer.append(batch(f"g{i}", 1))) for i in range(3)]
    bad = asyncio.create_task(coalescer.append(batch("bad", 1)))
    await settle()
    send.gate.set()
    await asyncio.gather(blocker, *good)
    with pytest.raises(LinkError) as refused:
        await bad
    assert refused.value.failure.kind is FailureKind.REDUCER_ERROR
    assert refused.value.failure.message.startswith("idempotency_conflict")
    assert observer.splits == 1
    assert [[e.stream_id for e in call] for call in send.calls] == [
        ["b"],
        ["g0", "g1", "g2", "bad"],
        ["g0"],
        ["g1"],
        ["g2"],
        ["bad"],
    ]


@pytest.mark.parametrize(
    "failure",
    [
        PublishFailure(FailureKind.NETWORK, "connection lost"),
        PublishFailure(FailureKind.TIMEOUT, "no answer within 30.0 s"),
    ],
    ids=["network", "timeout"],
)
async def test_coalescer_link_failure_is_every_streams_answer_without_a_split(failure: PublishFailure) -> None:
    """A lost link or a late answer says nothing about any one stream (unlike a refusal, the host ran nothing that
    could be one part's fault, and it may have committed it all): each stream gets the unknown outcome it would have
    had alone and retries on its own backoff, asking its head first; sending the parts again one by one at once
    would multiply the calls into the host that was too slow to answer one (docs/runtime.md "Coalescing")."""
    send = SendDouble(refuse=lambda _events: failure)
    observer = ObserverDouble()
    coalescer = Coalescer(send, CoalesceLimits(max_calls=1), observer)
    results = await asyncio.gather(*(coalescer.append(batch(f"s{i}", 1)) for i in range(4)), return_exceptions=True)
    assert all(isinstance(r, LinkError) and r.failure == failure for r in results)
    assert len({id(r) for r in results}) == 4  # each stream its own error object
    errors = [r for r in results if isinstance(r, LinkError)]
    assert all(classify(e.failure) is RetryClass.TRANSIENT and is_outcome_unknown(e.failure) for e in errors)
    assert observer.splits == 0
    assert sum(len(call) for call in send.calls) == 4 and len(send.calls) < 4


async def test_coalescer_cancelled_waiter_leaves_the_queue_and_its_batch_is_never_sent() -> None:
    send = SendDouble(gate=asyncio.Event())
    coalescer = Coalescer(send, CoalesceLimits(max_calls=1))
    blocker = asyncio.create_task(coalescer.append(batch("b", 1)))
    await settle()
    gone = asyncio.create_task(coalescer.append(batch("gone", 1)))
    kept = asyncio.create_task(coalescer.append(batch("kept", 1)))
    await settle()
    gone.cancel()
    await settle()
    send.gate.set()
    await asyncio.gather(blocker, kept)
    assert gone.cancelled()
    assert [[e.stream_id for e in call] for call in send.calls] == [["b"], ["kept"]]


async def test_coalescer_close_cancels_calls_in_flight_and_waiting_batches() -> None:
    send = SendDouble(gate=asyncio.Event())
    coalescer = Coalescer(send, CoalesceLimits(max_calls=1))
    in_flight = asyncio.create_task(coalescer.append(batch("a", 1)))
    await settle()
    queued = asyncio.create_task(coalescer.append(batch("b", 1)))
    await settle()
    await coalescer.close()
    results = await asyncio.gather(in_flight, queued, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert len(send.calls) == 1


def test_coalescer_refuses_limits_below_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Coalescer(SendDouble(), CoalesceLimits(max_calls=0))


async def test_coalescer_keeps_max_calls_in_flight_while_the_host_answers_fast() -> None:
    send = SendDouble()
    coalescer = Coalescer(send, CoalesceLimits(max_calls=2, behind_after=60.0))
    await coalescer.append(batch("s0", 1))  # answered at once: the host is not behind
    assert not coalescer.behind
    send.gate = gate = asyncio.Event()
    waiting = [asyncio.create_task(coalescer.append(batch(f"s{i}", 1))) for i in range(1, 4)]
    await settle()
    assert [len(call) for call in send.calls] == [1, 1, 1] and coalescer.waiting == 1  # s1 and s2 both in flight
    gate.set()
    await asyncio.gather(*waiting)
    assert [[e.stream_id for e in call] for call in send.calls] == [["s0"], ["s1"], ["s2"], ["s3"]]


async def answered_late(send: SendDouble, coalescer: Coalescer[Ev]) -> None:
    """One call the host answers after `behind_after` (0.01 s in these tests): the coalescer then sees it behind."""
    send.gate = gate = asyncio.Event()
    slow = asyncio.create_task(coalescer.append(batch("s0", 1)))
    await asyncio.sleep(0.05)
    gate.set()
    await slow
    assert coalescer.behind


async def test_coalescer_behind_host_gets_one_call_at_a_time_until_a_full_call_waits() -> None:
    send = SendDouble()
    observer = ObserverDouble()
    coalescer = Coalescer(send, CoalesceLimits(max_events=5, max_calls=2, behind_after=0.01), observer)
    await answered_late(send, coalescer)
    send.gate = gate = asyncio.Event()
    waiting = [asyncio.create_task(coalescer.append(batch("s1", 1)))]
    await settle()
    waiting += [asyncio.create_task(coalescer.append(batch(f"s{i}", 1))) for i in (2, 3)]
    await settle()
    assert len(send.calls) == 2 and coalescer.waiting == 2  # s2 and s3 wait to join one call, not a second small one
    waiting.append(asyncio.create_task(coalescer.append(batch("s4", 1, 3))))  # 5 events wait: a full call
    await settle()
    assert [[e.stream_id for e in call] for call in send.calls][2] == ["s2", "s3", "s4", "s4", "s4"]
    gate.set()
    await asyncio.gather(*waiting)
    assert not coalescer.behind  # answered at once again: back to two calls in flight
    assert observer.behind == [True, False]  # the runtime's gauge follows each change, once


async def test_coalescer_behind_host_sends_everything_waiting_as_one_call_when_the_call_answers() -> None:
    send = SendDouble()
    coalescer = Coalescer(send, CoalesceLimits(max_calls=2, behind_after=0.01))
    await answered_late(send, coalescer)
    send.gate = gate = asyncio.Event()
    waiting = [asyncio.create_task(coalescer.append(batch(f"s{i}", 1, 2))) for i in range(1, 8)]
    await settle()
    cancelled = asyncio.create_task(coalescer.append(batch("s8", 1, 2)))
    await settle()
    cancelled.cancel()
    assert len(send.calls) == 2 and coalescer.waiting == 6
    gate.set()
    await asyncio.gather(*waiting)
    assert [len(call) for call in send.calls] == [1, 2, 12]  # s2..s7 together; the cancelled s8 never sent
