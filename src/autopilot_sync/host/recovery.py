"""Start-up from disk: the schema check, the newest snapshot that verifies, and the log replayed after it.

What recovery found is a `RecoveryReport` (for logs, status pages and the recovery benchmark). When the log's tail
had to be set aside (quarantined by `CommitLog.recover`), that is remembered in `<data_dir>/history-discarded`
until the module's start hook has committed, so a crash in between still tells the next start
(`DiscardedHistoryMarker`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autopilot_sync.durable_files import write_atomically
from autopilot_sync.host.commitlog import CommitLog, TailReport
from autopilot_sync.host.datastore import Datastore
from autopilot_sync.host.hosted_module import HostedModule
from autopilot_sync.host.logtable import LogRows, segment_rows
from autopilot_sync.host.snapshot import Snapshot, latest_snapshot
from autopilot_sync.host.snapshot_section import Chunks, CorruptSnapshotError, Section, verify_in_background
from autopilot_sync.host.tx_record import decode_record, record_offset
from autopilot_sync.spacetime import moduledef
from autopilot_sync.spacetime.errors import DecodeError

log = logging.getLogger(__name__)

HISTORY_DISCARDED_MARKER = "history-discarded"
"""File in the data dir saying recovery set history aside and the module's start hook has not yet committed."""


class SchemaMismatchError(RuntimeError):
    """The data directory was written by a module with a different schema."""


@dataclass(slots=True)
class RecoveryReport:
    """What start-up found on disk: for logs, status pages and the recovery benchmark."""

    snapshot_offset: int = 0
    #: The loaded snapshot's id, chain length and schema (an incremental snapshot taken next extends it); 0: none,
    #: or one of a format no snapshot extends (`APSSNAP3` and older).
    snapshot_id: int = 0
    snapshot_chain: int = 0
    snapshot_schema: str = ""
    replayed: int = 0
    offset: int = 0
    seconds: float = 0.0
    #: Set exactly when this start set aside a tail of the log (acknowledged or not): history was discarded.
    tail: TailReport | None = None
    #: Log segments read (segments the snapshot wholly covers are never opened).
    segments_read: int = 0
    #: Bytes of the records replayed (what the snapshot-by-size rule counts from).
    replayed_bytes: int = 0
    #: Log records read, including records of a read segment that the snapshot already covered.
    records_read: int = 0
    #: Damaged records skipped because the snapshot covers them (harmless, logged).
    covered_damage: int = 0
    cleaned_connections: int = 0
    fresh: bool = False


@dataclass(frozen=True, slots=True)
class Recovered:
    """The state recovery rebuilt in the datastore: its offset, the newest timestamp replayed, and the report."""

    offset: int
    #: Microseconds of the last replayed transaction (0 when none was): the engine's clock never goes below it.
    last_timestamp: int
    report: RecoveryReport


def recover(
    data_dir: Path, module: HostedModule, database_name: str, datastore: Datastore, commitlog: CommitLog
) -> Recovered:
    """Rebuild `datastore` from `data_dir`: check the schema, load the newest snapshot, replay the log after it.

    The log is left open on a new segment after the recovered offset: appends never continue an old segment (it may
    span the snapshot, and it may have been written by a host that did not rotate).
    """
    accepted = check_meta(data_dir, module, database_name)
    # After a delete-data publish, history up to `cleared_after` belongs to the database's previous incarnation.
    cleared_after = int(read_meta(data_dir).get(CLEARED_AFTER, 0))
    # A data directory that was only ever served under today's schema holds only rows of today's shape. check_meta
    # always accepts today's hash, so one accepted hash is today's (no second V9 serialisation to recompute it).
    current = len(accepted) == 1
    snapshot = latest_snapshot(data_dir / "snapshots", after=cleared_after)
    while True:
        offset = cleared_after
        try:
            if snapshot is not None:
                offset = load_snapshot(datastore, snapshot, accepted)
            scan = commitlog.recover(offset, record_offset)
            first = offset
            replayed, offset, last_timestamp = replay(datastore, scan.payloads, offset, current=current)
            break
        except CorruptSnapshotError as exc:  # a log partition's buffer the replay needed failed its checksum
            if snapshot is None:
                raise
            log.warning("snapshot at offset %d unusable (%s); starting over from an older one", snapshot.offset, exc)
            datastore.clear()
            snapshot = latest_snapshot(data_dir / "snapshots", after=cleared_after, below=snapshot.offset)
    commitlog.open_segment(offset + 1)
    report = RecoveryReport(
        snapshot_offset=snapshot.offset if snapshot else 0,
        snapshot_id=snapshot.snapshot_id if snapshot else 0,
        snapshot_chain=snapshot.chain if snapshot else 0,
        snapshot_schema=snapshot.schema_hash if snapshot else "",
        replayed=replayed,
        replayed_bytes=sum(len(p) for p in scan.payloads if first < record_offset(p) <= offset),
        offset=offset,
        tail=scan.tail,
        segments_read=scan.segments_read,
        records_read=scan.records_read,
        covered_damage=scan.covered_damage,
        fresh=offset == cleared_after,
    )
    return Recovered(offset, last_timestamp, report)


CLEARED_AFTER = "cleared_after"
"""`meta.json` key: the offset up to which the log and snapshots belong to an incarnation a publish deleted."""
PUBLISHED = "published"
"""`meta.json` key: the module a publish installed (`publish.ModuleSource`), or null after `DELETE`; absent when
the database only ever ran the host's `--module`."""


def read_meta(data_dir: Path) -> dict[str, Any]:
    """`<data_dir>/meta.json` (empty when the directory has none yet)."""
    meta_path = data_dir / "meta.json"
    if not meta_path.exists():
        return {}
    value = json.loads(meta_path.read_text())
    return value if isinstance(value, dict) else {}


def record_publish(
    data_dir: Path,
    module: HostedModule,
    database_name: str,
    *,
    published: dict[str, Any] | None,
    cleared_after: int | None,
    owner_identity: str | None = None,
) -> None:
    """The commit point of a publish: one atomic write of `meta.json` naming the new module and its schema.

    Before the rename a restart runs the old module on the old data; after it, the new module (on the same rows, or
    on none from `cleared_after` on when the publish deleted the data): never a mix. A clear forgets the earlier
    schemas too, so no snapshot of the previous incarnation is ever read again.
    """
    meta = read_meta(data_dir)
    definition = module.definition()
    schema_hash = moduledef.schema_hash(definition)
    hashes = [] if cleared_after is not None else [h for h in meta.get("schema_hashes", []) if h]
    if schema_hash not in hashes:
        hashes.append(schema_hash)
    meta.update(
        database=database_name,
        module=module.name,
        schema_hash=schema_hash,
        schema=moduledef.v9.to_json(definition),
        schema_hashes=hashes,
    )
    meta[PUBLISHED] = published
    if cleared_after is not None:
        meta[CLEARED_AFTER] = cleared_after
        meta["incarnation"] = int(meta.get("incarnation", 0)) + 1
    if owner_identity is not None:
        meta["owner_identity"] = owner_identity
    write_atomically(data_dir / "meta.json", json.dumps(meta, sort_keys=True).encode("utf-8"))


def check_meta(data_dir: Path, module: HostedModule, database_name: str) -> frozenset[str]:
    """Refuse data written by an incompatible schema; accept and record compatible additions.

    `meta.json` keeps the schema the data was written with and every schema hash it has been served under, so
    a module that only adds tables, reducers or indexes starts on existing data (snapshots written under an
    earlier accepted schema stay readable), while anything breaking is refused with a readable diff. Returns the
    accepted schema hashes.
    """
    meta_path = data_dir / "meta.json"
    definition = module.definition()
    schema = moduledef.v9.to_json(definition)
    schema_hash = moduledef.schema_hash(schema)  # the same digest, without a second to_json at every start
    meta: dict[str, Any] = {"database": database_name, "module": module.name, "schema_hashes": []}
    stored = meta_path.read_bytes() if meta_path.exists() else None
    if stored is not None:
        meta = json.loads(stored)
        previous = meta.get("schema")
        if meta.get("schema_hash") != schema_hash:
            if previous is None:
                raise SchemaMismatchError(
                    f"data directory {data_dir} was written by a module with schema "
                    f"{str(meta.get('schema_hash', '?'))[:12]} (no schema recorded to compare with); the module "
                    f"now has schema {schema_hash[:12]}: start with an empty data directory"
                )
            from autopilot_sync.spacetime.moduledef.diff import compare  # only when the schema changed

            diff = compare(moduledef.from_json(previous), definition)
            if diff.breaking:
                raise SchemaMismatchError(
                    f"data directory {data_dir} holds database {meta.get('database')!r} written by schema "
                    f"{str(meta.get('schema_hash'))[:12]}; the module's schema {schema_hash[:12]} breaks it:\n"
                    + diff.render(base_label="stored", head_label="module")
                )
            log.warning("schema %s -> %s: compatible additions accepted", meta.get("schema_hash"), schema_hash)
    hashes = [h for h in meta.get("schema_hashes", [meta.get("schema_hash")]) if h]
    if schema_hash not in hashes:
        hashes.append(schema_hash)
    meta.update(schema_hash=schema_hash, schema=schema, schema_hashes=hashes)
    updated = json.dumps(meta, sort_keys=True).encode("utf-8")
    if updated != stored:  # a restart of an unchanged module rewrites (and fsyncs) nothing
        write_atomically(meta_path, updated)
    return frozenset(hashes)


def load_snapshot(datastore: Datastore, snapshot: Snapshot, accepted_schema_hashes: frozenset[str]) -> int:
    """Put a snapshot's rows into the (empty) datastore; returns its offset.

    A snapshot written under today's schema holds rows in today's shape: they are stored as they are, decoding only
    the columns the indexes need; one written under an earlier accepted schema is read row by row (`stored`).
    """
    if snapshot.schema_hash not in accepted_schema_hashes:
        raise SchemaMismatchError(f"snapshot at offset {snapshot.offset} was written by an unknown schema")
    current = snapshot.schema_hash == moduledef.schema_hash(datastore.module.definition())
    for name, rows in snapshot.tables.items():
        store = datastore[name]
        if current:
            store.load_current(rows)
        else:
            for stored in rows:
                store.put(*store.stored(stored))
    for name, segments in snapshot.logs.items():
        store = datastore[name]
        if current and isinstance(store.rows, LogRows):
            store.rows.load_segments(segments)  # the buffers as they are (views of the mapped file): no row decoded
        else:
            for stored in segment_rows(segments):
                store.put(*store.stored(stored))
    # Each buffer is checked at its partition's first use; this checks the others meanwhile, off the event loop.
    verify_in_background(
        section
        for segments in snapshot.logs.values()
        for segment in segments
        for section in (
            [segment.buf]
            if isinstance(segment.buf, Section)
            else segment.buf.sections
            if isinstance(segment.buf, Chunks)
            else []
        )
    )
    return snapshot.offset


def replay(datastore: Datastore, payloads: list[bytes], offset: int, *, current: bool = False) -> tuple[int, int, int]:
    """Apply the log records after `offset`, in order: (records replayed, new offset, last timestamp in micros).

    Records at or below `offset` (covered by the snapshot) are skipped; a gap or an undecodable record stops start-up.
    `current`: every record was written under today's schema (the data directory never saw another), so a row is
    stored as it is, decoding only its index key columns (`put_current`), not decoded whole to find its shape.
    """
    replayed = 0
    last_timestamp = 0
    for payload in payloads:
        try:
            record_at, timestamp_micros, changes = decode_record(payload)
        except DecodeError as exc:
            raise RuntimeError(f"commit log record after offset {offset} undecodable: {exc}") from exc
        if record_at <= offset:
            continue
        if record_at != offset + 1:
            raise RuntimeError(f"commit log gap: expected offset {offset + 1}, found {record_at}")
        for table, inserts, deletes in changes:
            store = datastore[table]
            for row_bytes in deletes:
                if store.take(row_bytes) is None and store.migrates:
                    store.take(store.stored(row_bytes)[0])
            if current:
                store.put_current_many(inserts)
            else:
                for row_bytes in inserts:
                    store.put(*store.stored(row_bytes))
        offset = record_at
        last_timestamp = timestamp_micros
        replayed += 1
    return replayed, offset, last_timestamp


class DiscardedHistoryMarker:
    """`<data_dir>/history-discarded`: set when recovery set a tail aside, cleared once the start hook committed.

    Recovery moves the tail to quarantine at once, so without this file a crash before the module's start hook
    committed would start the next time with nothing left to say that history was discarded.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / HISTORY_DISCARDED_MARKER

    def remember(self, tail: TailReport | None) -> bool:
        """Write the marker durably when this start set a tail aside; whether history was discarded (this start or
        an earlier one whose hook never committed)."""
        if tail is not None:
            write_atomically(self.path, tail.reason.encode("utf-8"))
        return self.path.exists()

    def clear(self) -> None:
        """The start hook's transaction is durable: the module has been told."""
        self.path.unlink(missing_ok=True)
