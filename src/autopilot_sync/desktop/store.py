"""The desktop's local copy in SQLite: applied events and one cursor (checkpoint + epoch) per stream.

The one promise this file keeps: the events applied and the checkpoint that covers them are written in one
transaction, so after any crash the checkpoint says exactly what is stored — resuming never skips an event and never
applies one twice. A write that does not continue the stored checkpoint is refused (`StoreConflictError`) rather than
creating a hole, which also catches two desktops sharing one file.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from autopilot_sync.desktop.apply import Cursor, StreamEvent

SCHEMA_VERSION = 2
"""2 added the stream chain: `stream_cursor.chain` and `applied_event.epoch`/`chain` (a version-1 file upgrades)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS stream_cursor (
    stream_id TEXT PRIMARY KEY,
    checkpoint INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    chain TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS applied_event (
    stream_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    payload_hash TEXT NOT NULL,
    published_at_us INTEGER NOT NULL,
    committed_at_us INTEGER NOT NULL,
    applied_at REAL NOT NULL,
    epoch INTEGER NOT NULL DEFAULT 0,
    chain TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (stream_id, seq)
);
"""

_UPGRADE_FROM_1 = """
ALTER TABLE stream_cursor ADD COLUMN chain TEXT NOT NULL DEFAULT '';
ALTER TABLE applied_event ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE applied_event ADD COLUMN chain TEXT NOT NULL DEFAULT '';
"""


class StoreConflictError(RuntimeError):
    """A write that does not continue the stored checkpoint of its stream (it would leave a hole or repeat)."""


class DesktopStore:
    """One SQLite file (WAL mode) holding the local copy of every followed stream."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version not in (0, 1, SCHEMA_VERSION):
            raise RuntimeError(f"{path} has schema version {version}; this desktop knows {SCHEMA_VERSION}")
        if version == 1:
            self._db.executescript(_UPGRADE_FROM_1)
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    def cursors(self) -> dict[str, Cursor]:
        """Every stream's stored cursor."""
        rows = self._db.execute("SELECT stream_id, checkpoint, epoch, chain FROM stream_cursor").fetchall()
        return {row[0]: Cursor(row[0], int(row[1]), int(row[2]), str(row[3])) for row in rows}

    def cursor(self, stream_id: str) -> Cursor:
        """A stream's stored cursor (checkpoint 0, epoch 0 when never seen)."""
        row = self._db.execute(
            "SELECT checkpoint, epoch, chain FROM stream_cursor WHERE stream_id = ?", (stream_id,)
        ).fetchone()
        return Cursor(stream_id, int(row[0]), int(row[1]), str(row[2])) if row else Cursor(stream_id)

    def apply(self, before: Cursor, events: Sequence[StreamEvent], after: Cursor) -> None:
        """Persist `events` (the seqs right after `before.checkpoint`) and move the cursor to `after`, atomically.

        Raises `StoreConflictError` (and writes nothing) when the stored cursor is not `before` or the seqs do not run
        `before.checkpoint + 1 .. after.checkpoint` without a hole.
        """
        expected = list(range(before.checkpoint + 1, after.checkpoint + 1))
        if [event.seq for event in events] != expected or any(e.stream_id != before.stream_id for e in events):
            raise StoreConflictError(f"{before.stream_id}: events do not continue checkpoint {before.checkpoint}")
        now = time.time()
        with self._transaction():
            self._check_cursor(before)
            self._db.executemany(
                "INSERT INTO applied_event (stream_id, seq, idempotency_key, kind, payload, payload_hash, "
                "published_at_us, committed_at_us, applied_at, epoch, chain) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        e.stream_id,
                        e.seq,
                        e.idempotency_key,
                        e.kind,
                        e.payload,
                        e.payload_hash,
                        e.published_at_us,
                        e.committed_at_us,
                        now,
                        e.epoch,
                        e.chain,
                    )
                    for e in events
                ],
            )
            self._put_cursor(after, now)

    def set_epoch(self, cursor: Cursor, epoch: int) -> Cursor:
        """Record the epoch first seen for a stream (no events change); returns the new cursor."""
        updated = Cursor(cursor.stream_id, cursor.checkpoint, epoch, cursor.chain)
        with self._transaction():
            self._check_cursor(cursor)
            self._put_cursor(updated, time.time())
        return updated

    def reset_stream(self, cursor: Cursor) -> None:
        """Drop every local event of the stream and restart it at `cursor` (a rebuild), atomically."""
        with self._transaction():
            self._db.execute("DELETE FROM applied_event WHERE stream_id = ?", (cursor.stream_id,))
            self._put_cursor(cursor, time.time())

    def recent(self, stream_id: str, limit: int = 50) -> list[StreamEvent]:
        """The newest `limit` applied events of a stream, oldest first."""
        rows = self._db.execute(
            "SELECT stream_id, seq, idempotency_key, kind, payload, payload_hash, published_at_us, committed_at_us, "
            "epoch, chain FROM applied_event WHERE stream_id = ? ORDER BY seq DESC LIMIT ?",
            (stream_id, limit),
        ).fetchall()
        return [StreamEvent(*row) for row in reversed(rows)]

    def seqs(self, stream_id: str) -> list[int]:
        """Every stored seq of a stream, ascending (tests and checks read the applied history with it)."""
        rows = self._db.execute("SELECT seq FROM applied_event WHERE stream_id = ? ORDER BY seq", (stream_id,))
        return [int(row[0]) for row in rows]

    def _check_cursor(self, expected: Cursor) -> None:
        stored = self.cursor(expected.stream_id)
        if (stored.checkpoint, stored.epoch) != (expected.checkpoint, expected.epoch):
            raise StoreConflictError(
                f"{expected.stream_id}: stored cursor is {stored.checkpoint}@{stored.epoch}, "
                f"expected {expected.checkpoint}@{expected.epoch}"
            )

    def _put_cursor(self, cursor: Cursor, now: float) -> None:
        self._db.execute(
            "INSERT INTO stream_cursor (stream_id, checkpoint, epoch, updated_at, chain) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(stream_id) DO UPDATE SET checkpoint = excluded.checkpoint, epoch = excluded.epoch, "
            "updated_at = excluded.updated_at, chain = excluded.chain",
            (cursor.stream_id, cursor.checkpoint, cursor.epoch, now, cursor.chain),
        )

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """`BEGIN IMMEDIATE` ... `COMMIT`, or `ROLLBACK` on any exception (sqlite3's own context manager does not BEGIN)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("ROLLBACK" if exc_type is not None else "COMMIT")
