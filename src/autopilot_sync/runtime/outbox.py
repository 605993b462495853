"""The durable outbox: events and their outbox rows written in one SQLite transaction, seq gap-free per stream.

Why SQLite with WAL and `synchronous=FULL`: a producer is told "appended, seq n" only after the event is on disk,
so a crash of the runtime can lose nothing it acknowledged. Seqs are assigned inside the same `BEGIN IMMEDIATE`
transaction that stores the event, so two appends can never take the same seq and a rolled-back append never leaves
a hole. The idempotency key is `<stream_id>:<seq>`, fixed at append time: however often the publisher retries, the
host sees the same key and the same payload hash, so a retry can never create a second row.

The store is synchronous and knows nothing about asyncio or the host; `RuntimeStore` in `store.py` runs it on one
thread for the event loop.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autopilot_sync.contract.canonical import CanonicalJsonError, hash_value, nests_deeper_than
from autopilot_sync.runtime.streams import InputErrorCode, InvalidInputError, NewEvent

_SCHEMA = """
CREATE TABLE IF NOT EXISTS stream (
    stream_id TEXT PRIMARY KEY,
    head_seq INTEGER NOT NULL,
    published_seq INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS event (
    stream_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    payload_hash TEXT NOT NULL,
    appended_at_us INTEGER NOT NULL,
    PRIMARY KEY (stream_id, seq)
);
CREATE TABLE IF NOT EXISTS outbox (
    stream_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    appended_at_us INTEGER NOT NULL,
    PRIMARY KEY (stream_id, seq)
);
CREATE TABLE IF NOT EXISTS request (
    request_id TEXT PRIMARY KEY,
    body_hash TEXT NOT NULL,
    result TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letter (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    retry_class TEXT NOT NULL,
    reason TEXT NOT NULL,
    dead_at_us INTEGER NOT NULL,
    replayed_at_us INTEGER
);
CREATE INDEX IF NOT EXISTS dead_letter_open ON dead_letter (stream_id) WHERE replayed_at_us IS NULL;
"""

MAX_REQUEST_ID_LENGTH = 128
#: The sync module's default limit on one canonical payload; larger events would only be dead-lettered later.
DEFAULT_MAX_PAYLOAD_BYTES = 262144
#: The sync module's default nesting limit (`sync_config.max_payload_depth`); deeper would be dead-lettered.
MAX_PAYLOAD_DEPTH = 64


@dataclass(frozen=True, slots=True)
class Appended:
    """Where one appended event landed: what the producer is told."""

    stream_id: str
    seq: int


@dataclass(frozen=True, slots=True)
class AppendResult:
    """The seqs of one append; `replayed` when a request id was seen before and these are the original seqs."""

    events: tuple[Appended, ...]
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as stored and as published: canonical payload text, its hash and the deterministic key."""

    stream_id: str
    seq: int
    idempotency_key: str
    kind: str
    payload: str
    payload_hash: str
    appended_at_us: int


@dataclass(frozen=True, slots=True)
class StreamBacklog:
    """One stream's unpublished events: how many, the oldest one's append time, and whether it is dead-lettered."""

    stream_id: str
    head_seq: int
    published_seq: int
    pending: int
    oldest_appended_us: int | None
    blocked: bool


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event the publisher gave up on: its stream stays blocked at this seq until an operator replays it."""

    id: int
    stream_id: str
    seq: int
    retry_class: str
    reason: str
    dead_at_us: int
    replayed_at_us: int | None


def idempotency_key(stream_id: str, seq: int) -> str:
    """`<stream_id>:<seq>`: deterministic, so every retry of an event carries the same key (no time window)."""
    return f"{stream_id}:{seq}"


class Outbox:
    """The SQLite file holding every appended event, the unpublished ones and the dead letters.

    One instance is one connection: use it from one thread at a time (`RuntimeStore` does). Several instances, in
    one process or several (the operator command), may share the file: `BEGIN IMMEDIATE` serialises their writes.
    """

    def __init__(self, path: Path, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_payload_bytes = max_payload_bytes
        self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database (every committed append is already durable)."""
        self._db.close()

    def append(self, events: Sequence[NewEvent], now_us: int, request_id: str | None = None) -> AppendResult:
        """Store `events` with the next seqs of their streams and their outbox rows, all or nothing, durably.

        With a `request_id`, a repeated request with the same events returns the seqs of the first one instead of
        appending again (a producer retrying a POST whose answer it lost); different events under the same id are
        refused with `request_id_conflict`.
        """
        if not events:
            raise InvalidInputError(InputErrorCode.EMPTY_APPEND, "an append needs at least one event")
        prepared = [(event, *_canonical(event.payload)) for event in events]
        for event, text, _ in prepared:
            if nests_deeper_than(text, MAX_PAYLOAD_DEPTH):
                raise InvalidInputError(
                    InputErrorCode.INVALID_PAYLOAD, f"{event.kind} payload nests deeper than {MAX_PAYLOAD_DEPTH} levels"
                )
            size = len(text.encode("utf-8"))
            if size > self.max_payload_bytes:
                raise InvalidInputError(
                    InputErrorCode.PAYLOAD_TOO_LARGE,
                    f"{event.kind} payload is {size} bytes canonical, limit {self.max_payload_bytes}",
                )
        body_hash = ""
        if request_id is not None:
            if not request_id or len(request_id) > MAX_REQUEST_ID_LENGTH:
                raise InvalidInputError(
                    InputErrorCode.INVALID_REQUEST_ID, f"request_id must be 1-{MAX_REQUEST_ID_LENGTH} characters"
                )
            _, body_hash = hash_value([[event.stream_id, event.kind, text] for event, text, _ in prepared])
        cursor = self._db.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            if request_id is not None:
                seen = cursor.execute(
                    "SELECT body_hash, result FROM request WHERE request_id = ?", (request_id,)
                ).fetchone()
                if seen is not None:
                    cursor.execute("ROLLBACK")
                    if seen[0] != body_hash:
                        raise InvalidInputError(
                            InputErrorCode.REQUEST_ID_CONFLICT,
                            f"request_id {request_id!r} was used for different events",
                        )
                    return AppendResult(tuple(Appended(s, q) for s, q in json.loads(seen[1])), replayed=True)
            appended: list[Appended] = []
            for event, text, digest in prepared:
                row = cursor.execute("SELECT head_seq FROM stream WHERE stream_id = ?", (event.stream_id,)).fetchone()
                seq = (row[0] if row else 0) + 1
                if row is None:
                    cursor.execute("INSERT INTO stream (stream_id, head_seq) VALUES (?, ?)", (event.stream_id, seq))
                else:
                    cursor.execute("UPDATE stream SET head_seq = ? WHERE stream_id = ?", (seq, event.stream_id))
                cursor.execute(
                    "INSERT INTO event VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (event.stream_id, seq, idempotency_key(event.stream_id, seq), event.kind, text, digest, now_us),
                )
                cursor.execute("INSERT INTO outbox VALUES (?, ?, ?)", (event.stream_id, seq, now_us))
                appended.append(Appended(event.stream_id, seq))
            if request_id is not None:
                result = json.dumps([[a.stream_id, a.seq] for a in appended])
                cursor.execute("INSERT INTO request VALUES (?, ?, ?)", (request_id, body_hash, result))
            cursor.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                cursor.execute("ROLLBACK")
            raise
        return AppendResult(tuple(appended))

    def pending_streams(self) -> list[str]:
        """Streams with unpublished events and no open dead letter, i.e. what the publisher may work on now."""
        rows = self._db.execute(
            "SELECT DISTINCT stream_id FROM outbox WHERE stream_id NOT IN "
            "(SELECT stream_id FROM dead_letter WHERE replayed_at_us IS NULL) ORDER BY stream_id"
        ).fetchall()
        return [row[0] for row in rows]

    def next_batch(self, stream_id: str, limit: int) -> list[StoredEvent]:
        """The oldest `limit` unpublished events of a stream, in seq order."""
        rows = self._db.execute(
            "SELECT e.stream_id, e.seq, e.idempotency_key, e.kind, e.payload, e.payload_hash, e.appended_at_us "
            "FROM outbox o JOIN event e ON e.stream_id = o.stream_id AND e.seq = o.seq "
            "WHERE o.stream_id = ? ORDER BY o.seq LIMIT ?",
            (stream_id, limit),
        ).fetchall()
        return [StoredEvent(*row) for row in rows]

    def mark_published(self, stream_id: str, through_seq: int) -> list[int]:
        """Drop the outbox rows of `stream_id` up to `through_seq` (the host has them); their append times."""
        cursor = self._db.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            times = [
                row[0]
                for row in cursor.execute(
                    "SELECT appended_at_us FROM outbox WHERE stream_id = ? AND seq <= ? ORDER BY seq",
                    (stream_id, through_seq),
                )
            ]
            cursor.execute("DELETE FROM outbox WHERE stream_id = ? AND seq <= ?", (stream_id, through_seq))
            cursor.execute(
                "UPDATE stream SET published_seq = MAX(published_seq, ?) WHERE stream_id = ?", (through_seq, stream_id)
            )
            cursor.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                cursor.execute("ROLLBACK")
            raise
        return times

    def requeue(self, stream_id: str, now_us: int) -> int:
        """Queue every stored event of a stream again from seq 1: the host no longer holds any of it.

        Why: a delete-data publish gives the database a new incarnation with no streams at all, so the stream must be
        published again from its first event (seqs, keys and hashes unchanged) for the host to accept the next one.
        The outbox rows get `now_us` as their queue time (the age metrics measure waiting, not the event's age).
        Returns how many events were queued again.
        """
        cursor = self._db.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            cursor.execute(
                "INSERT OR IGNORE INTO outbox (stream_id, seq, appended_at_us) "
                "SELECT stream_id, seq, ? FROM event WHERE stream_id = ? "
                "AND seq <= (SELECT published_seq FROM stream WHERE stream_id = ?)",
                (now_us, stream_id, stream_id),
            )
            queued = cursor.rowcount
            cursor.execute("UPDATE stream SET published_seq = 0 WHERE stream_id = ?", (stream_id,))
            cursor.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                cursor.execute("ROLLBACK")
            raise
        return max(queued, 0)

    def published_streams(self) -> list[str]:
        """Streams with at least one event the host acknowledged (what a new incarnation of the database lost)."""
        return [row[0] for row in self._db.execute("SELECT stream_id FROM stream WHERE published_seq > 0")]

    def dead_letter(self, stream_id: str, seq: int, retry_class: str, reason: str, now_us: int) -> DeadLetter:
        """Park a stream at `seq`: nothing after it is published until an operator replays it (order is kept)."""
        cursor = self._db.execute(
            "INSERT INTO dead_letter (stream_id, seq, retry_class, reason, dead_at_us) VALUES (?, ?, ?, ?, ?)",
            (stream_id, seq, retry_class, reason, now_us),
        )
        return DeadLetter(int(cursor.lastrowid or 0), stream_id, seq, retry_class, reason, now_us, None)

    def dead_letters(self, include_replayed: bool = False) -> list[DeadLetter]:
        """Open dead letters (and, if asked, the ones already replayed), oldest first."""
        where = "" if include_replayed else " WHERE replayed_at_us IS NULL"
        rows = self._db.execute(
            "SELECT id, stream_id, seq, retry_class, reason, dead_at_us, replayed_at_us FROM dead_letter"
            f"{where} ORDER BY id"
        ).fetchall()
        return [DeadLetter(*row) for row in rows]

    def replay(self, stream_id: str | None, now_us: int) -> list[DeadLetter]:
        """Close the open dead letters of one stream (or all): the publisher tries those events again."""
        if stream_id is None:
            rows = self.dead_letters()
            self._db.execute("UPDATE dead_letter SET replayed_at_us = ? WHERE replayed_at_us IS NULL", (now_us,))
        else:
            rows = [dead for dead in self.dead_letters() if dead.stream_id == stream_id]
            self._db.execute(
                "UPDATE dead_letter SET replayed_at_us = ? WHERE replayed_at_us IS NULL AND stream_id = ?",
                (now_us, stream_id),
            )
        return rows

    def backlog(self) -> list[StreamBacklog]:
        """Every stream's head, published seq and unpublished count (the source of the depth and age metrics)."""
        rows = self._db.execute(
            "SELECT s.stream_id, s.head_seq, s.published_seq, COUNT(o.seq), MIN(o.appended_at_us), "
            "EXISTS (SELECT 1 FROM dead_letter d WHERE d.stream_id = s.stream_id AND d.replayed_at_us IS NULL) "
            "FROM stream s LEFT JOIN outbox o ON o.stream_id = s.stream_id GROUP BY s.stream_id ORDER BY s.stream_id"
        ).fetchall()
        return [StreamBacklog(row[0], row[1], row[2], row[3], row[4], bool(row[5])) for row in rows]

    def events(self, stream_id: str) -> list[StoredEvent]:
        """Every event of a stream the runtime ever acknowledged, in seq order (published or not)."""
        rows = self._db.execute(
            "SELECT stream_id, seq, idempotency_key, kind, payload, payload_hash, appended_at_us FROM event "
            "WHERE stream_id = ? ORDER BY seq",
            (stream_id,),
        ).fetchall()
        return [StoredEvent(*row) for row in rows]

    def streams(self) -> list[str]:
        """Every stream that has at least one event."""
        return [row[0] for row in self._db.execute("SELECT stream_id FROM stream ORDER BY stream_id")]


def _canonical(payload: object) -> tuple[str, str]:
    try:
        return hash_value(payload)
    except CanonicalJsonError as exc:
        raise InvalidInputError(InputErrorCode.INVALID_PAYLOAD, str(exc)) from None
