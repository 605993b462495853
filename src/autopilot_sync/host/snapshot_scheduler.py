"""When snapshots are taken and what they let go of: every N commits or N bytes of log records, whichever comes
first, once the log covering them is durable. Bytes too, because a host with few large commits (batches of 500
events) would otherwise replay its whole history at every start.

A host with a log table (`host/logtable.py`) snapshots every `delta_every_bytes` of log, incrementally: the snapshot
names the previous one as its base and holds only what the log tables appended since (and the generic tables whole),
so what a start replays stays short while a snapshot costs what changed, not the ~400 MB of a million events. A
whole snapshot comes after `deltas_max` incremental ones or once `every_bytes` of log were written since the last
whole one: captured incrementally all the same, written as such, then read back with its chain and rewritten whole
under the same name in the writer thread (`write_consolidated`), so the event loop copies only what was appended
even then. Only when there is nothing to build on (the first snapshot after a start on an older format, a failed
write, a schema change, a missing base) is a whole one captured on the loop.

The rows are captured at commit (the datastore moves on at once), the log rotates so the next record starts a new
segment (a segment never spans a snapshot), and the file is written off the event loop after the flush covering the
captured offset. Then every snapshot older than the newest `snapshots_kept` whole ones is deleted, and every log
segment the oldest kept whole one wholly covers. The file format is `snapshot.py`'s.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from autopilot_sync.host.commitlog import CommitLog
from autopilot_sync.host.datastore import Datastore
from autopilot_sync.host.hosted_module import HostedModule
from autopilot_sync.host.logtable import LogRows
from autopilot_sync.host.recovery import RecoveryReport
from autopilot_sync.host.snapshot import (
    Snapshot,
    prune_snapshots,
    read_header,
    snapshot_path,
    write_consolidated,
    write_snapshot,
)
from autopilot_sync.host.transaction import CommittedTx
from autopilot_sync.spacetime import moduledef

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SnapshotBase:
    """The newest snapshot written (or loaded at start) that the next incremental one may extend."""

    offset: int
    snapshot_id: int
    #: Files in its chain (1: it is whole).
    chain: int
    schema_hash: str


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
        delta_every_bytes: int = 4 * 1024 * 1024,
        deltas_max: int = 15,
    ) -> None:
        self.directory = directory
        self.module = module
        self._datastore = datastore
        self._commitlog = commitlog
        self._every = every
        self._every_bytes = every_bytes
        self._delta_every_bytes = delta_every_bytes
        self._deltas_max = deltas_max
        #: Bytes of log records written (or replayed at start) since the newest snapshot, and the newest whole one.
        self.bytes_since = 0
        self.bytes_since_whole = 0
        #: What the next incremental snapshot extends (None: the next one is whole).
        self.base: SnapshotBase | None = None
        #: Bumped by `whole_next`: a snapshot captured before it never becomes a base.
        self._chain = 0
        self._kept = kept
        #: Offset of the newest snapshot taken (or loaded at start).
        self.last_offset = 0
        self._task: asyncio.Task[None] | None = None
        #: The definition last hashed and its schema hash: `schema_hash` of the same (immutable) definition object
        #: hashed the whole frozen tree again at each capture for its cache's key (~75 µs); a publish brings a new one.
        self._hashed: tuple[moduledef.ModuleDef, str] | None = None

    def resume(self, report: RecoveryReport) -> None:
        """Start from what recovery loaded: the next snapshot extends it when its format allows."""
        self.last_offset = report.snapshot_offset
        self.bytes_since = self.bytes_since_whole = report.replayed_bytes
        self.base = (
            SnapshotBase(report.snapshot_offset, report.snapshot_id, report.snapshot_chain, report.snapshot_schema)
            if report.snapshot_id and report.snapshot_chain
            else None
        )

    def whole_next(self) -> None:
        """The tables were replaced (a publish that changed the schema or cleared the data): the next snapshot is
        whole, even if one being written now succeeds."""
        self.base = None
        self._chain += 1

    def after_commit(self, tx: CommittedTx, sequence: int, record_bytes: int = 0) -> None:
        """Called for every commit (log record `sequence`, `record_bytes` long): capture a snapshot when one is due
        and none is running."""
        self.bytes_since += record_bytes
        self.bytes_since_whole += record_bytes
        due = (
            tx.offset - self.last_offset >= self._every
            or self.bytes_since_whole >= self._every_bytes
            or (self.bytes_since >= self._delta_every_bytes and self._log_stores() != [])
        )
        if due and (self._task is None or self._task.done()):
            stores = [(name, store) for name, store in self._datastore.tables.items() if not store.table.event]
            schema_hash = self._schema_hash()
            base = self.base if self._extends(schema_hash) else None
            # A whole one is due: captured incrementally all the same when it can be, and made whole off the loop.
            whole = base is None or base.chain > self._deltas_max or self.bytes_since_whole >= self._every_bytes
            self.last_offset = tx.offset
            self.bytes_since = 0
            if whole:
                self.bytes_since_whole = 0
            incremental = base is not None
            captured = Snapshot(
                tx.offset,
                schema_hash,
                {name: list(store.rows) for name, store in stores if not isinstance(store.rows, LogRows)},
                {name: store.rows.segments(incremental) for name, store in stores if isinstance(store.rows, LogRows)},
                base=base.offset if base is not None else 0,
                base_id=base.snapshot_id if base is not None else 0,
            )
            self._commitlog.rotate_at(tx.offset + 1)
            chain = 1 if whole else base.chain + 1 if base is not None else 1
            self._task = asyncio.get_running_loop().create_task(
                self._write(captured, sequence, chain, self._chain, consolidate=whole and incremental)
            )

    def _schema_hash(self) -> str:
        definition = self.module.definition()
        hashed = self._hashed
        if hashed is None or hashed[0] is not definition:
            hashed = self._hashed = (definition, moduledef.schema_hash(definition))
        return hashed[1]

    def _log_stores(self) -> list[LogRows]:
        return [store.rows for store in self._datastore.tables.values() if isinstance(store.rows, LogRows)]

    def _extends(self, schema_hash: str) -> bool:
        """Whether the snapshot due now may be incremental (see the module docstring)."""
        base = self.base
        return (
            base is not None
            and base.schema_hash == schema_hash
            and self._log_stores() != []
            and snapshot_path(self.directory, base.offset).exists()
        )

    async def stop(self) -> None:
        """Wait for a snapshot being written (its failure is already logged)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _write(self, snapshot: Snapshot, sequence: int, chain: int, epoch: int, *, consolidate: bool) -> None:
        self.base = None  # until this one is written: a failure leaves the next one whole
        try:
            await self._commitlog.wait_durable(sequence)
            path = await asyncio.get_running_loop().run_in_executor(
                None, write_consolidated if consolidate else write_snapshot, self.directory, snapshot
            )
            if epoch == self._chain:
                self.base = SnapshotBase(snapshot.offset, read_header(path).snapshot_id, chain, snapshot.schema_hash)
            kept = prune_snapshots(self.directory, keep=self._kept)
            if len(kept) >= self._kept:
                # Segments the oldest kept whole snapshot wholly covers are needed by no start, even one that must
                # fall back to that snapshot because the newer ones are damaged; until there are that many whole
                # ones, the log from the start is what a start falls back to.
                self._commitlog.drop_segments_before(kept[-1] + 1)
            kind = f"incremental on {snapshot.base}" if chain > 1 else "whole, off the loop" if consolidate else "whole"
            log.info("snapshot at offset %d written (%s)", snapshot.offset, kind)
        except Exception:
            log.exception("snapshot at offset %d failed; the commit log still holds everything", snapshot.offset)
