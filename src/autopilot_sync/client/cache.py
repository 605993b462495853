"""The client cache: the rows every live query set currently selects, reference-counted, with change callbacks.

Pure and synchronous (no sockets): the connection turns each server message into a list of `RowOp`s, fully decoded
and validated, then hands the whole list to `apply`, so a bad message can never leave the cache half-updated. Rules,
as in the official TypeScript SDK's `TableCache`:
- rows are keyed by primary key when the table has one, else by their bytes;
- a row selected by several query sets is stored once with a count; it is deleted when the last one lets go;
- within one message, a delete and an insert of the same key is an *update* (one callback with old and new row);
- callbacks run after the whole message is applied, never mid-transaction.
The cache also remembers which query set holds which rows, so an unsubscribe (or a query set the server drops)
releases exactly that set's rows, and a reconnect can rebuild everything and report only the difference
(`begin_resync` / `end_resync`).
"""

from __future__ import annotations

import enum
import logging
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from autopilot_sync.client.gc_pause import paused_gc

log = logging.getLogger(__name__)


class ChangeKind(enum.Enum):
    """What happened to a row in the cache."""

    INSERT = "insert"
    DELETE = "delete"
    UPDATE = "update"


class ChangeCause(enum.Enum):
    """Which server message (or client action) produced a batch of changes."""

    SUBSCRIBE_APPLIED = "subscribe_applied"
    TRANSACTION = "transaction"
    REDUCER_RESULT = "reducer_result"
    UNSUBSCRIBED = "unsubscribed"
    SUBSCRIPTION_DROPPED = "subscription_dropped"
    RESYNC = "resync"
    """The difference between the cache before a reconnect and the server's state after it."""


class RowOp(NamedTuple):
    """One row entering or leaving one query set's results (or an event-table row, which is never stored).

    A named tuple rather than a frozen dataclass: one is built per received row, and a frozen dataclass's
    `__init__` (a guarded `__setattr__` per field) was a visible share of a catch-up's client CPU.
    """

    query_set_id: int
    table: str
    insert: bool
    key: Hashable
    row_bytes: bytes
    row: Any
    event: bool = False


@dataclass(frozen=True, slots=True)
class RowChange:
    """A change callers see: `old` is None for inserts, `new` is None for deletes."""

    kind: ChangeKind
    table: str
    old: Any
    new: Any
    cause: ChangeCause

    @property
    def row(self) -> Any:
        """The row that now exists (insert/update) or that went away (delete)."""
        return self.old if self.kind is ChangeKind.DELETE else self.new


@dataclass(slots=True)
class _Entry:
    row_bytes: bytes
    row: Any
    count: int


@dataclass(slots=True)
class _TableState:
    entries: dict[Hashable, _Entry] = field(default_factory=dict)


InsertCallback = Callable[[Any], None]
DeleteCallback = Callable[[Any], None]
UpdateCallback = Callable[[Any, Any], None]
BatchCallback = Callable[[Sequence[RowChange]], None]


class ClientCache:
    """Rows per table; see the module docstring for the rules."""

    def __init__(self) -> None:
        self._tables: dict[str, _TableState] = {}
        #: query set → table → key → how many times that set holds the row
        self._members: dict[int, dict[str, Counter[Hashable]]] = {}
        self._stash: dict[str, dict[Hashable, _Entry]] | None = None
        self._on_insert: dict[str, list[InsertCallback]] = {}
        self._on_delete: dict[str, list[DeleteCallback]] = {}
        self._on_update: dict[str, list[UpdateCallback]] = {}
        self._on_batch: list[BatchCallback] = []
        #: deletes of rows the cache did not hold (a server bug, logged and ignored as the official SDK does)
        self.anomalies = 0

    # ----- reading -----

    def rows(self, table: str) -> list[Any]:
        """The rows of a table (during a resync: the rows as they were before the reconnect)."""
        return [entry.row for entry in self._visible(table).values()]

    def find(self, table: str, primary_key: Any) -> Any | None:
        """The row with this primary key (a tuple of the key columns' values for a composite key), if cached."""
        entry = self._visible(table).get(("pk", primary_key))
        return entry.row if entry is not None else None

    def count(self, table: str) -> int:
        """Number of distinct rows cached for a table."""
        return len(self._visible(table))

    def tables(self) -> list[str]:
        """Names of tables holding at least one row."""
        source = self._stash if self._stash is not None else {n: t.entries for n, t in self._tables.items()}
        return sorted(name for name, entries in source.items() if entries)

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        for table in self.tables():
            for row in self.rows(table):
                yield table, row

    @property
    def resyncing(self) -> bool:
        """True between `begin_resync` and `end_resync`."""
        return self._stash is not None

    def _visible(self, table: str) -> dict[Hashable, _Entry]:
        if self._stash is not None:
            return self._stash.get(table, {})
        state = self._tables.get(table)
        return state.entries if state is not None else {}

    # ----- callbacks -----

    def on_insert(self, table: str, callback: InsertCallback) -> None:
        """Call `callback(row)` when a row enters the cache."""
        self._on_insert.setdefault(table, []).append(callback)

    def on_delete(self, table: str, callback: DeleteCallback) -> None:
        """Call `callback(row)` when a row leaves the cache."""
        self._on_delete.setdefault(table, []).append(callback)

    def on_update(self, table: str, callback: UpdateCallback) -> None:
        """Call `callback(old, new)` when a row is replaced by one with the same primary key."""
        self._on_update.setdefault(table, []).append(callback)

    def on_batch(self, callback: BatchCallback) -> None:
        """Call `callback(changes)` once per applied message with all its changes (also when there are none)."""
        self._on_batch.append(callback)

    # ----- writing -----

    def apply(self, ops: Sequence[RowOp], cause: ChangeCause) -> list[RowChange]:
        """Apply one message's operations atomically, then run callbacks; returns the changes.

        During a resync the changes are computed but not reported (the diff is reported by `end_resync`).
        """
        with paused_gc(len(ops)):
            changes = self._apply(ops, cause)
        if self._stash is not None:
            return []
        self._emit(changes)
        return changes

    def _apply(self, ops: Sequence[RowOp], cause: ChangeCause) -> list[RowChange]:
        grouped: dict[str, dict[Hashable, list[RowOp]]] = {}
        changes: list[RowChange] = []
        for op in ops:
            if op.event:
                if op.insert:
                    changes.append(RowChange(ChangeKind.INSERT, op.table, None, op.row, cause))
                continue
            by_table = grouped.get(op.table)
            if by_table is None:
                by_table = grouped[op.table] = {}
            same_key = by_table.get(op.key)
            if same_key is None:
                by_table[op.key] = [op]
            else:
                same_key.append(op)
        insert_kind = ChangeKind.INSERT
        for table, by_key in grouped.items():
            state = self._tables.setdefault(table, _TableState())
            entries = state.entries
            members_of: dict[int, Counter[Hashable]] = {}
            for key, key_ops in by_key.items():
                op = key_ops[0]
                if len(key_ops) == 1 and op.insert and key not in entries:
                    # The common case (every row of a catch-up): one new row entering one query set.
                    members = members_of.get(op.query_set_id)
                    if members is None:
                        members = self._members.setdefault(op.query_set_id, {}).setdefault(table, Counter())
                        members_of[op.query_set_id] = members
                    members[key] += 1
                    entries[key] = _Entry(op.row_bytes, op.row, 1)
                    changes.append(RowChange(insert_kind, table, None, op.row, cause))
                    continue
                change = self._apply_key(state, table, key, key_ops, cause)
                if change is not None:
                    changes.append(change)
        return changes

    def _apply_key(
        self, state: _TableState, table: str, key: Hashable, ops: list[RowOp], cause: ChangeCause
    ) -> RowChange | None:
        inserted = [op for op in ops if op.insert]
        deletes = len(ops) - len(inserted)
        for op in ops:
            members = self._members.setdefault(op.query_set_id, {}).get(table)
            if members is None:
                members = self._members[op.query_set_id][table] = Counter()
            if op.insert:
                members[key] += 1
            elif members[key] > 0:
                members[key] -= 1
                if members[key] == 0:
                    del members[key]
        entry = state.entries.get(key)
        previous = entry.count if entry is not None else 0
        count = previous + len(inserted) - deletes
        if count < 0:
            self.anomalies += 1
            log.warning("table %s: %d deletes of a row held %d times; ignored", table, deletes, previous)
            count = 0
        if count == 0:
            if entry is None:
                return None
            del state.entries[key]
            return RowChange(ChangeKind.DELETE, table, entry.row, None, cause)
        newest = inserted[-1] if inserted else None
        if entry is None:
            assert newest is not None
            state.entries[key] = _Entry(newest.row_bytes, newest.row, count)
            return RowChange(ChangeKind.INSERT, table, None, newest.row, cause)
        entry.count = count
        if newest is not None and newest.row_bytes != entry.row_bytes:
            old = entry.row
            entry.row_bytes, entry.row = newest.row_bytes, newest.row
            return RowChange(ChangeKind.UPDATE, table, old, newest.row, cause)
        return None

    def release_query_set(self, query_set_id: int, cause: ChangeCause) -> list[RowChange]:
        """Drop every row a query set holds (unsubscribed, or dropped by the server); returns the deletes."""
        members = self._members.pop(query_set_id, {})
        ops = [
            RowOp(query_set_id, table, False, key, b"", None)
            for table, counter in members.items()
            for key, times in counter.items()
            for _ in range(times)
        ]
        self._members[query_set_id] = {}
        changes = self.apply(ops, cause)
        self._members.pop(query_set_id, None)
        return changes

    def query_set_size(self, query_set_id: int) -> int:
        """Rows a query set currently holds (counting duplicates)."""
        return sum(sum(c.values()) for c in self._members.get(query_set_id, {}).values())

    # ----- reconnect -----

    def begin_resync(self) -> None:
        """Forget the live state but keep what callers saw, to be compared in `end_resync`.

        Called when a new connection starts resubscribing. Calling it again (a reconnect that failed midway) keeps
        the original view and discards the partial one.
        """
        if self._stash is None:
            self._stash = {name: state.entries for name, state in self._tables.items()}
        self._tables = {}
        self._members = {}

    def end_resync(self) -> list[RowChange]:
        """Report the difference between the view before the reconnect and the rebuilt state, then run callbacks."""
        stash = self._stash
        if stash is None:
            return []
        self._stash = None
        changes: list[RowChange] = []
        for table in sorted(set(stash) | set(self._tables)):
            before = stash.get(table, {})
            after_state = self._tables.get(table)
            after = after_state.entries if after_state is not None else {}
            for key, old in before.items():
                new = after.get(key)
                if new is None:
                    changes.append(RowChange(ChangeKind.DELETE, table, old.row, None, ChangeCause.RESYNC))
                elif new.row_bytes != old.row_bytes:
                    changes.append(RowChange(ChangeKind.UPDATE, table, old.row, new.row, ChangeCause.RESYNC))
            for key, new in after.items():
                if key not in before:
                    changes.append(RowChange(ChangeKind.INSERT, table, None, new.row, ChangeCause.RESYNC))
        self._emit(changes)
        return changes

    # ----- dispatch -----

    def _emit(self, changes: Sequence[RowChange]) -> None:
        for change in changes:
            if change.kind is ChangeKind.INSERT:
                for insert_cb in self._on_insert.get(change.table, ()):
                    self._guard(insert_cb, change.new)
            elif change.kind is ChangeKind.DELETE:
                for delete_cb in self._on_delete.get(change.table, ()):
                    self._guard(delete_cb, change.old)
            else:
                for update_cb in self._on_update.get(change.table, ()):
                    self._guard(update_cb, change.old, change.new)
        for batch_cb in self._on_batch:
            self._guard(batch_cb, changes)

    @staticmethod
    def _guard(callback: Callable[..., None], *args: Any) -> None:
        """A failing callback is logged and must not stop the others or the connection."""
        try:
            callback(*args)
        except Exception:
            log.exception("cache callback %r failed", callback)
