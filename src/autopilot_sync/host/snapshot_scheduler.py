"""When snapshots are taken and what they let go of: every N commits or N bytes of log records, whichever comes
first, once the log covering them is durable. Bytes too, because a host with few large commits (batches of 500
events) would otherwise replay its whole history at every start.

The rows are captured at commit (the datastore moves on at once), the log rotates so the next record starts a new
segment (a segment never spans a snapshot), and the file is written off the event loop after the flush covering the
captured offset. Then all but the newest `snapshots_kept` snapshots are deleted, and every log segment the oldest
kept one wholly covers. The file format is `snapshot.py`'s.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from autopilot_sync.host.commitlog import CommitLog
from autopilot_sync.host.datastore import Datastore
from autopilot_sync.host.hosted_module import HostedModule
from autopilot_sync.host.logtable import LogRows
from autopilot_sync.host.snapshot import Snapshot, prune_snapshots, write_snapshot
from autopilot_sync.host.transaction import CommittedTx
from autopilot_sync.spacetime import moduledef

log = logging.getLogger(__name__)


class SnapshotScheduler:
    """Takes a snapshot every `every` commits or `every_bytes` bytes of log records (one at a time) and applies the
    retention rule after each."""

    def __init__(
        self,
        directory: Path,
        module: HostedModule,
        datastore: Datastore,
        commitlog: CommitLog,
        *,
        every: int,
        kept: int,
        every_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.directory = directory
        self.module = module
        self._datastore = datastore
        self._commitlog = commitlog
        self._every = every
        self._every_bytes = every_bytes
        #: Bytes of log records written (or replayed at start) since the newest snapshot.
        self.bytes_since = 0
        self._kept = kept
        #: Offset of the newest snapshot taken (or loaded at start).
        self.last_offset = 0
        self._task: asyncio.Task[None] | None = None

    def after_commit(self, tx: CommittedTx, sequence: int, record_bytes: int = 0) -> None:
        """Called for every commit (log record `sequence`, `record_bytes` long): capture a snapshot when one is due
        and none is running."""
        self.bytes_since += record_bytes
        due = tx.offset - self.last_offset >= self._every or self.bytes_since >= self._every_bytes
        if due and (self._task is None or self._task.done()):
            self.last_offset = tx.offset
            self.bytes_since = 0
            stores = [(name, store) for name, store in self._datastore.tables.items() if not store.table.event]
            captured = Snapshot(
                tx.offset,
                moduledef.schema_hash(self.module.definition()),
                {name: list(store.rows) for name, store in stores if not isinstance(store.rows, LogRows)},
                {name: store.rows.segments() for name, store in stores if isinstance(store.rows, LogRows)},
            )
            self._commitlog.rotate_at(tx.offset + 1)
            self._task = asyncio.get_running_loop().create_task(self._write(captured, sequence))

    async def stop(self) -> None:
        """Wait for a snapshot being written (its failure is already logged)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _write(self, snapshot: Snapshot, sequence: int) -> None:
        try:
            await self._commitlog.wait_durable(sequence)
            await asyncio.get_running_loop().run_in_executor(None, write_snapshot, self.directory, snapshot)
            kept = prune_snapshots(self.directory, keep=self._kept)
            if kept:
                # Segments the oldest kept snapshot wholly covers are needed by no start, even one that must fall
                # back to that snapshot because the newer ones are damaged.
                self._commitlog.drop_segments_before(kept[-1] + 1)
            log.info("snapshot at offset %d written", snapshot.offset)
        except Exception:
            log.exception("snapshot at offset %d failed; the commit log still holds everything", snapshot.offset)
