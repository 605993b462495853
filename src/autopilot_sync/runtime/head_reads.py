"""Head reads of concurrent streams joined into as few `stream_head` queries as the per-query bound allows.

After a combined call's outcome is unknown (a timeout, a lost link: `coalesce.py`), every stream in it asks the host
for its head before sending again (`Publisher._count_duplicates`): 30 streams were 30 one-off queries, each a round
trip and a query the host plans and runs, at the moment the host was too slow to answer one call. Here the reads
that wait while a query is out (or arrive in the same turn of the loop) go together as the next one: the link's
`stream_heads` asks for them with one query per `hostlink.HEADS_PER_QUERY` streams.

A stream the answer leaves out is read by itself (`HostLink.stream_head`), so the batched answer never decides
less than a stream's own read would: the link leaves out what one query cannot decide (a stream the host does not
show although this runtime's reader grant was recorded before: the grant may have gone with a delete-data publish,
and the single read records it again; an id the link refuses: the single read raises that stream's error), and a
partial answer costs single reads, never a wrong or a missing head. A failed query is every waiting stream's failure,
as the single reads it replaces would each have failed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence

#: Reads the heads of these streams (None: the host holds none); a stream the answer cannot decide is absent.
ReadMany = Callable[[Sequence[str]], Awaitable[Mapping[str, int | None]]]
#: Reads one stream's head (None: the host holds no such stream).
ReadOne = Callable[[str], Awaitable[int | None]]


class HeadReads:
    """Joins concurrent `head` calls; one query round at a time, the reads arriving meanwhile join the next."""

    def __init__(self, read_many: ReadMany, read_one: ReadOne) -> None:
        self._read_many = read_many
        self._read_one = read_one
        #: Streams waiting for the next query round, each with the futures of its waiting readers.
        self._waiting: dict[str, list[asyncio.Future[int | None]]] = {}
        self._task: asyncio.Task[None] | None = None
        #: Query rounds sent (what the batching saves is visible in tests).
        self.rounds = 0

    async def head(self, stream_id: str) -> int | None:
        """The host's head of `stream_id` (None when it holds none), read with the other streams waiting now."""
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(stream_id, []).append(future)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="stream head reads")
        return await future

    async def close(self) -> None:
        """Stop the query round in flight (its waiting readers are cancelled with it)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for futures in self._waiting.values():
            for future in futures:
                future.cancel()
        self._waiting.clear()

    async def _run(self) -> None:
        await asyncio.sleep(0)  # the reads asked in this turn of the loop join the first round
        while self._waiting:
            batch, self._waiting = self._waiting, {}
            self.rounds += 1
            try:
                heads = await self._read_many(list(batch))
            except asyncio.CancelledError:
                _cancel(batch)
                raise
            except Exception as exc:
                for futures in batch.values():
                    _settle(futures, exc=exc)
                continue
            missing = [stream_id for stream_id in batch if stream_id not in heads]
            for stream_id, futures in batch.items():
                if stream_id in heads:
                    _settle(futures, heads[stream_id])
            if missing:
                await asyncio.gather(*(self._read_alone(stream_id, batch[stream_id]) for stream_id in missing))

    async def _read_alone(self, stream_id: str, futures: list[asyncio.Future[int | None]]) -> None:
        try:
            head = await self._read_one(stream_id)
        except asyncio.CancelledError:
            _cancel({stream_id: futures})
            raise
        except Exception as exc:
            _settle(futures, exc=exc)
        else:
            _settle(futures, head)


def _settle(futures: list[asyncio.Future[int | None]], head: int | None = None, exc: Exception | None = None) -> None:
    for future in futures:
        if future.done():  # its reader was cancelled meanwhile
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(head)


def _cancel(batch: Mapping[str, list[asyncio.Future[int | None]]]) -> None:
    for futures in batch.values():
        for future in futures:
            future.cancel()
