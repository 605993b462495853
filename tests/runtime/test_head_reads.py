"""`HeadReads`: concurrent head reads joined into as few queries as possible, every stream still given its own head.

The link here is a test double (`HeadsDouble`): a dict of heads, a log of the queries asked, and planted omissions
and failures. The real link's query split (64 streams a query) is `hostlink.head_queries`, tested with the runtime's
process tests; the publisher's use after a timed-out combined call is in `test_publisher.py`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from autopilot_sync.runtime.head_reads import HeadReads
from autopilot_sync.runtime.retry import FailureKind, LinkError, PublishFailure


@dataclass
class HeadsDouble:
    """Test double of the link's two head reads: `heads` is what the host holds."""

    heads: dict[str, int]
    #: Streams a batched answer leaves out (undecided), as the real link does for a stream that lost its grant.
    left_out: set[str] = field(default_factory=set)
    #: A failure every batched query raises (None: they answer).
    failing: LinkError | None = None
    #: Streams whose single read fails.
    refused: set[str] = field(default_factory=set)
    batches: list[list[str]] = field(default_factory=list)
    singles: list[str] = field(default_factory=list)
    delay: float = 0.0

    async def read_many(self, stream_ids: Sequence[str]) -> dict[str, int | None]:
        self.batches.append(list(stream_ids))
        await asyncio.sleep(self.delay)
        if self.failing is not None:
            raise self.failing
        return {s: self.heads.get(s) for s in stream_ids if s not in self.left_out}

    async def read_one(self, stream_id: str) -> int | None:
        self.singles.append(stream_id)
        await asyncio.sleep(0)
        if stream_id in self.refused:
            raise LinkError(PublishFailure(FailureKind.REDUCER_ERROR, f"invalid_event: {stream_id}"))
        return self.heads.get(stream_id)


def timeout_error() -> LinkError:
    return LinkError(PublishFailure(FailureKind.TIMEOUT, "no answer within 30.0 s"))


async def test_reads_asked_together_are_one_query_and_each_stream_gets_its_own_head() -> None:
    link = HeadsDouble({f"s{i}": 10 + i for i in range(30)})
    reads = HeadReads(link.read_many, link.read_one)
    heads = await asyncio.gather(*(reads.head(f"s{i}") for i in range(30)), reads.head("s3"), reads.head("gone"))
    assert heads == [10 + i for i in range(30)] + [13, None]
    assert len(link.batches) == 1 and sorted(link.batches[0]) == sorted([f"s{i}" for i in range(30)] + ["gone"])
    assert link.singles == [] and reads.rounds == 1


async def test_a_partial_answer_still_resolves_every_stream_through_single_reads() -> None:
    link = HeadsDouble({f"s{i}": 100 + i for i in range(10)}, left_out={"s2", "s7", "absent"})
    reads = HeadReads(link.read_many, link.read_one)
    asked = [f"s{i}" for i in range(10)] + ["absent"]
    heads = await asyncio.gather(*(reads.head(s) for s in asked))
    assert heads == [100 + i for i in range(10)] + [None]
    assert sorted(link.singles) == ["absent", "s2", "s7"], "only the streams the answer left out were read alone"


async def test_a_failed_query_fails_every_waiting_stream_and_the_next_reads_are_asked_again() -> None:
    link = HeadsDouble({"a": 1, "b": 2}, failing=timeout_error())
    reads = HeadReads(link.read_many, link.read_one)
    results = await asyncio.gather(reads.head("a"), reads.head("b"), return_exceptions=True)
    assert all(isinstance(r, LinkError) and r.failure.kind is FailureKind.TIMEOUT for r in results)
    link.failing = None
    assert await asyncio.gather(reads.head("a"), reads.head("b")) == [1, 2]
    assert len(link.batches) == 2


async def test_a_single_read_that_fails_fails_only_its_own_stream() -> None:
    link = HeadsDouble({"a": 1, "bad'id": 5}, left_out={"bad'id"}, refused={"bad'id"})
    reads = HeadReads(link.read_many, link.read_one)
    good, bad = await asyncio.gather(reads.head("a"), reads.head("bad'id"), return_exceptions=True)
    assert good == 1
    assert isinstance(bad, LinkError) and bad.failure.kind is FailureKind.REDUCER_ERROR


async def test_reads_asked_while_a_query_is_out_join_the_next_one() -> None:
    link = HeadsDouble({f"s{i}": i for i in range(20)}, delay=0.02)
    reads = HeadReads(link.read_many, link.read_one)
    first = asyncio.gather(*(reads.head(f"s{i}") for i in range(5)))
    await asyncio.sleep(0.005)  # the first query is out
    later = asyncio.gather(*(reads.head(f"s{i}") for i in range(5, 20)))
    assert await first == list(range(5)) and await later == list(range(5, 20))
    assert [len(batch) for batch in link.batches] == [5, 15]


async def test_close_cancels_the_waiting_reads() -> None:
    link = HeadsDouble({"a": 1}, delay=10)
    reads = HeadReads(link.read_many, link.read_one)
    waiting = asyncio.ensure_future(reads.head("a"))
    await asyncio.sleep(0.01)
    await reads.close()
    with pytest.raises(asyncio.CancelledError):
        await waiting
