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
from itertools import chain
from typing import Any, NamedTuple, overload

from autopilot_sync.client.gc_pause import MIN_ROWS, paused_gc

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


class RowBatch(NamedTuple):
    """Rows of one row list entering or leaving one query set, kept as bytes and decoded when first read.

    For tables without a primary key (every row's key is its bytes, as `sync_event`'s): the rows were checked to
    decode before the batch was built (`TableSchema.check_rows`), so a catch-up of 10,000 events lands in the cache
    without 10,000 row objects; `decode` builds a row when a callback, `rows()` or a change needs it.
    """

    query_set_id: int
    table: str
    insert: bool
    rows: Sequence[bytes]
    decode: Callable[[bytes], Any]


class _Entry:
    """A cached row: its bytes, how many query-set memberships hold it, and the row object, built on first read.

    An entry's bytes and row never change once made (an update replaces the entry), so a change may refer to the
    entry and decode only when read.
    """

    __slots__ = ("_decode", "_row", "count", "row_bytes")

    def __init__(self, row_bytes: bytes, row: Any, count: int, decode: Callable[[bytes], Any] | None = None) -> None:
        self.row_bytes = row_bytes
        self._row = row
        self.count = count
        self._decode = decode

    @property
    def row(self) -> Any:
        """The row object (decoded from the bytes on first read)."""
        decode = self._decode
        if decode is not None:
            self._row = decode(self.row_bytes)
            self._decode = None
        return self._row


class _Unread:
    """What the cache holds for each row of a batch inserted whole until the row is first needed: one object per
    batch, not per row (a catch-up's 10,000 entries, and the collector's walks over them, were a third of the SDK's
    cache CPU). The key is the row's bytes (`RowBatch` is only for tables keyed by their bytes), so `_entry` makes
    the row's `_Entry` from the key when something reads it; its count is 1, as every batch row's is.
    """

    __slots__ = ("decode",)

    def __init__(self, decode: Callable[[bytes], Any]) -> None:
        self.decode = decode


#: A table's rows: a row's key → its entry (or `_Unread` until first read; see `_entry`).
_Entries = dict[Hashable, "_Entry | _Unread"]


def _entry(entries: _Entries, key: Hashable) -> _Entry | None:
    """The entry held under `key` (made from an `_Unread` mark, and kept, on first read), or None."""
    held = entries.get(key)
    if type(held) is _Unread:
        assert isinstance(key, bytes)
        held = entries[key] = _Entry(key, None, 1, held.decode)
    return held  # type: ignore[return-value]  # None, or an _Entry


def _entries_of(entries: _Entries) -> list[_Entry]:
    """Every entry of a table, in order, each `_Unread` mark made into its entry."""
    return [held if type(held) is _Entry else _entry(entries, key) for key, held in entries.items()]  # type: ignore[misc]


def _value(held: Any) -> Any:
    return held.row if type(held) is _Entry else held


class RowChange:
    """A change callers see: `old` is None for inserts, `new` is None for deletes. Read-only.

    A plain class rather than a frozen dataclass so that the row can be held as its cache entry and decoded only
    when `old`/`new`/`row` is read (a callback that never looks at the row costs no decode).
    """

    __slots__ = ("_new", "_old", "cause", "kind", "table")

    def __init__(self, kind: ChangeKind, table: str, old: Any, new: Any, cause: ChangeCause) -> None:
        self.kind = kind
        self.table = table
        self._old = old
        self._new = new
        self.cause = cause

    @property
    def old(self) -> Any:
        """The row before the change (None for an insert)."""
        return _value(self._old)

    @property
    def new(self) -> Any:
        """The row after the change (None for a delete)."""
        return _value(self._new)

    @property
    def row(self) -> Any:
        """The row that now exists (insert/update) or that went away (delete)."""
        return self.old if self.kind is ChangeKind.DELETE else self.new

    def _fields(self) -> tuple[Any, ...]:
        return (self.kind, self.table, self.old, self.new, self.cause)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RowChange):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        fields = f"kind={self.kind!r}, table={self.table!r}, old={self.old!r}, new={self.new!r}, cause={self.cause!r}"
        return f"RowChange({fields})"


class _BatchInserts(Sequence[RowChange]):
    """The insert changes of rows a batch brought in (`_insert_batch`), each `RowChange` built when read.

    A catch-up's `SubscribeApplied` brings thousands of rows that nobody may ever look at one by one; building a
    change object per row was a fifth of the SDK's CPU for it. The entries are the cache's own (a read decodes the
    row the cache keeps), so what a reader gets is what the eager list gave.
    """

    __slots__ = ("_cause", "_decode", "_entries", "_rows", "_table")

    def __init__(
        self, table: str, entries: _Entries, rows: Sequence[bytes], decode: Callable[[bytes], Any], cause: ChangeCause
    ) -> None:
        self._table = table
        self._entries = entries
        self._rows = rows
        self._decode = decode
        self._cause = cause

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> RowChange: ...

    @overload
    def __getitem__(self, index: slice) -> list[RowChange]: ...

    def __getitem__(self, index: int | slice) -> RowChange | list[RowChange]:
        if isinstance(index, slice):
            return [self._change(raw) for raw in self._rows[index]]
        return self._change(self._rows[index])

    def __iter__(self) -> Iterator[RowChange]:
        return map(self._change, self._rows)

    def _change(self, raw: bytes) -> RowChange:
        # The cache's entry for the row (its bytes are its key); one of its own if the row has left the cache since.
        entry = _entry(self._entries, raw) or _Entry(raw, None, 1, self._decode)
        return RowChange(ChangeKind.INSERT, self._table, None, entry, self._cause)


class Changes(Sequence[RowChange]):
    """One applied message's changes, in order: built ones and batches' inserts built when read (`_BatchInserts`).

    `apply` returns a plain list when every change was built anyway; this sequence otherwise. It compares equal to
    any sequence of the same changes.
    """

    __slots__ = ("_parts", "_size")

    def __init__(self, parts: list[Sequence[RowChange]]) -> None:
        self._parts = parts
        self._size = sum(map(len, parts))

    def __len__(self) -> int:
        return self._size

    @overload
    def __getitem__(self, index: int) -> RowChange: ...

    @overload
    def __getitem__(self, index: slice) -> list[RowChange]: ...

    def __getitem__(self, index: int | slice) -> RowChange | list[RowChange]:
        if isinstance(index, slice):
            return list(self)[index]
        if index < 0:
            index += self._size
        if not 0 <= index < self._size:
            raise IndexError("change index out of range")
        for part in self._parts:
            if index < len(part):
                return part[index]
            index -= len(part)
        raise IndexError("change index out of range")  # pragma: no cover - the bounds were checked above

    def __iter__(self) -> Iterator[RowChange]:
        return chain.from_iterable(self._parts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Changes({list(self)!r})"


@dataclass(slots=True)
class _TableState:
    entries: _Entries = field(default_factory=dict)


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
        self._stash: dict[str, _Entries] | None = None
        self._on_insert: dict[str, list[InsertCallback]] = {}
        self._on_delete: dict[str, list[DeleteCallback]] = {}
        self._on_update: dict[str, list[UpdateCallback]] = {}
        self._on_batch: list[BatchCallback] = []
        #: deletes of rows the cache did not hold (a server bug, logged and ignored as the official SDK does)
        self.anomalies = 0

    # ----- reading -----

    def rows(self, table: str) -> list[Any]:
        """The rows of a table (during a resync: the rows as they were before the reconnect)."""
        return [entry.row for entry in _entries_of(self._visible(table))]

    def find(self, table: str, primary_key: Any) -> Any | None:
        """The row with this primary key (a tuple of the key columns' values for a composite key), if cached."""
        entry = _entry(self._visible(table), ("pk", primary_key))
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

    def _visible(self, table: str) -> _Entries:
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

    def apply(self, ops: Sequence[RowOp | RowBatch], cause: ChangeCause) -> Sequence[RowChange]:
        """Apply one message's operations atomically, then run callbacks; returns the changes.

        During a resync the changes are computed but not reported (the diff is reported by `end_resync`). The
        changes of rows a batch inserted whole are built when read (`Changes`).
        """
        rows = sum(len(op.rows) if isinstance(op, RowBatch) else 1 for op in ops) if ops else 0
        if rows < MIN_ROWS:  # a live update or a call's answer: no pause to take (the context costs ~2 µs)
            changes = self._apply(ops, cause) if ops else []
        else:
            with paused_gc(rows):
                changes = self._apply(ops, cause)
        if self._stash is not None:
            return []
        self._emit(changes)
        return changes

    def _apply(self, ops: Sequence[RowOp | RowBatch], cause: ChangeCause) -> Sequence[RowChange]:
        grouped: dict[str, dict[Hashable, list[RowOp]] | RowBatch] = {}
        changes: list[RowChange] = []
        parts: list[Sequence[RowChange]] = []  # when a batch is inserted whole: the changes before it, its own, ...
        for item in ops:
            if isinstance(item, RowBatch):
                if item.table not in grouped and item.insert and self._all_new(item):
                    grouped[item.table] = item
                    continue
                expanded = _expand(item)
            else:
                expanded = [item]
            for op in expanded:
                if op.event:
                    if op.insert:
                        changes.append(RowChange(ChangeKind.INSERT, op.table, None, op.row, cause))
                    continue
                by_table = grouped.get(op.table)
                if by_table is None:
                    by_table = grouped[op.table] = {}
                elif isinstance(by_table, RowBatch):  # the table's rows came as a batch, and now more ops
                    by_table = grouped[op.table] = _by_key(_expand(by_table))
                same_key = by_table.get(op.key)
                if same_key is None:
                    by_table[op.key] = [op]
                else:
                    same_key.append(op)
        insert_kind = ChangeKind.INSERT
        for table, by_key in grouped.items():
            state = self._tables.setdefault(table, _TableState())
            entries = state.entries
            if isinstance(by_key, RowBatch):
                parts.extend((changes, self._insert_batch(entries, by_key, cause)))
                changes = []
                continue
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
        if not parts:
            return changes
        parts.append(changes)
        return Changes([part for part in parts if part])

    def _all_new(self, batch: RowBatch) -> bool:
        """True when no row of the batch repeats and none is cached yet: it can be inserted without grouping."""
        rows = batch.rows
        state = self._tables.get(batch.table)
        return len(set(rows)) == len(rows) and (state is None or state.entries.keys().isdisjoint(rows))

    def _insert_batch(self, entries: _Entries, batch: RowBatch, cause: ChangeCause) -> _BatchInserts:
        """Insert rows known to be new (`_all_new`), keyed by their bytes, kept undecoded: a catch-up's path."""
        rows, table, decode = batch.rows, batch.table, batch.decode
        self._members.setdefault(batch.query_set_id, {}).setdefault(table, Counter()).update(rows)
        entries.update(dict.fromkeys(rows, _Unread(decode)))
        return _BatchInserts(table, entries, rows, decode, cause)

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
        entry = _entry(state.entries, key)
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
            return RowChange(ChangeKind.DELETE, table, entry, None, cause)
        newest = inserted[-1] if inserted else None
        if entry is None:
            assert newest is not None
            state.entries[key] = _Entry(newest.row_bytes, newest.row, count)
            return RowChange(ChangeKind.INSERT, table, None, newest.row, cause)
        entry.count = count
        if newest is not None and newest.row_bytes != entry.row_bytes:
            # A new entry rather than new contents: a change made earlier may still refer to the old entry.
            state.entries[key] = _Entry(newest.row_bytes, newest.row, count)
            return RowChange(ChangeKind.UPDATE, table, entry, newest.row, cause)
        return None

    def release_query_set(self, query_set_id: int, cause: ChangeCause) -> Sequence[RowChange]:
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
            for key in list(before):
                if type(after.get(key)) is _Unread:
                    continue  # kept by its bytes, which are its key: still there, unchanged
                old = _entry(before, key)
                new = _entry(after, key)
                assert old is not None
                if new is None:
                    changes.append(RowChange(ChangeKind.DELETE, table, old, None, ChangeCause.RESYNC))
                elif new.row_bytes != old.row_bytes:
                    changes.append(RowChange(ChangeKind.UPDATE, table, old, new, ChangeCause.RESYNC))
            for key in list(after):
                if key not in before:
                    changes.append(RowChange(ChangeKind.INSERT, table, None, _entry(after, key), ChangeCause.RESYNC))
        self._emit(changes)
        return changes

    # ----- dispatch -----

    def _emit(self, changes: Sequence[RowChange]) -> None:
        if not (self._on_insert or self._on_delete or self._on_update):
            rows: Sequence[RowChange] = ()  # no per-row callback: a catch-up's changes need no walk
        else:
            rows = changes
        for change in rows:
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


def _expand(batch: RowBatch) -> list[RowOp]:
    """A batch as one op per row (rows decoded now), for a message the batch path cannot take whole."""
    query_set_id, table, insert, rows, decode = batch
    return [RowOp(query_set_id, table, insert, raw, raw, decode(raw) if insert else None) for raw in rows]


def _by_key(ops: Sequence[RowOp]) -> dict[Hashable, list[RowOp]]:
    grouped: dict[Hashable, list[RowOp]] = {}
    for op in ops:
        grouped.setdefault(op.key, []).append(op)
    return grouped
