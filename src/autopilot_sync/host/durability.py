"""Which commits are durable, and who hears of them once they are: the rule that no answer outruns the disk.

The engine writes a transaction to the commit log at commit; the log's group-commit flusher makes it durable later.
`DurableCommits` keeps the commits in between (consecutive offsets, oldest first), is the log's `on_durable` hook,
hands each transaction to the commit listeners (the subscription engine) in commit order once it is on disk, and
turns "the state at offset k" into a future every answer that reveals that state waits for.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from autopilot_sync.host.commitlog import CommitLog, DurableCallback, StorageFailedError
from autopilot_sync.host.transaction import CommittedTx

log = logging.getLogger(__name__)

CommitListener = Callable[[CommittedTx], None]
#: Told the transactions just applied (one, or a procedure's several), before they are durable (`HostEngine`).
ApplyListener = Callable[[Sequence[CommittedTx]], None]


@dataclass(slots=True)
class _Pending:
    sequence: int
    tx: CommittedTx


class DurableCommits:
    """The commits written but not yet durable, and the listeners told of each once it is."""

    def __init__(self, commitlog: CommitLog) -> None:
        self._commitlog = commitlog
        self._pending: deque[_Pending] = deque()
        self._listeners: list[CommitListener] = []
        #: Every commit up to this offset is on disk (and was handed to the listeners).
        self.durable_offset = 0
        commitlog.on_durable = self._deliver

    def add_listener(self, listener: CommitListener) -> None:
        """Receive every committed transaction, after it is durable, in commit order."""
        self._listeners.append(listener)

    def written(self, sequence: int, tx: CommittedTx) -> None:
        """Record a commit just appended to the log as record `sequence` (offsets arrive consecutively)."""
        self._pending.append(_Pending(sequence, tx))

    def undelivered_after(self, offset: int) -> list[CommittedTx]:
        """The commits after `offset` not yet handed to the listeners, oldest first (offsets are consecutive)."""
        pending = self._pending
        if not pending:
            return []
        start = max(0, offset + 1 - pending[0].tx.offset)
        return [pending[i].tx for i in range(start, len(pending))]

    @property
    def last_sequence(self) -> int | None:
        """The log sequence of the newest commit not yet durable (None when every commit is)."""
        return self._pending[-1].sequence if self._pending else None

    def durable_future(self, offset: int) -> asyncio.Future[None] | None:
        """A future resolved once every commit up to `offset` is durable (None when they already are).

        The future resolves after the commit listeners have seen the transaction at `offset`. Raises
        StorageFailedError when the log failed.
        """
        if offset <= self.durable_offset:
            return None
        if self._commitlog.failure is not None:
            raise StorageFailedError(f"commit log failed: {self._commitlog.failure}")
        # `_pending` holds the not-yet-durable commits with consecutive offsets, oldest first.
        first = self._pending[0].tx.offset
        newest = self._pending[-1].tx.offset
        return self._commitlog.durable_future(self._pending[min(offset, newest) - first].sequence)

    def when_durable(self, offset: int, callback: DurableCallback) -> bool:
        """`durable_future` as a callback (`CommitLog.when_durable`): False, without calling it, when every commit up
        to `offset` already is durable. Raises StorageFailedError when the log failed."""
        if offset <= self.durable_offset:
            return False
        if self._commitlog.failure is not None:
            raise StorageFailedError(f"commit log failed: {self._commitlog.failure}")
        first = self._pending[0].tx.offset
        newest = self._pending[-1].tx.offset
        return self._commitlog.when_durable(self._pending[min(offset, newest) - first].sequence, callback)

    def _deliver(self, sequence: int) -> None:
        """The log's `on_durable` hook: hand the transactions now durable to the listeners, in order."""
        while self._pending and self._pending[0].sequence <= sequence:
            tx = self._pending.popleft().tx
            self.durable_offset = tx.offset
            for listener in self._listeners:
                try:
                    listener(tx)
                except Exception:
                    log.exception("commit listener failed on offset %d", tx.offset)
