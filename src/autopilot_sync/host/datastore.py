"""In-memory tables with B-tree indexes: the committed state the host serves.

A row is identified by its BSATN bytes (tables are sets, as in SpacetimeDB), which also makes the bytes available
for the commit log and for subscribers without encoding twice. The bytes are the only copy of a row the table
keeps: a row is decoded when it is read (`RowMap`), because a decoded tuple of Python objects costs twice its
bytes and most stored rows are only ever sent as bytes. Every indexed column group is a sorted map, so point and
range lookups are O(log n); unique groups map a key to one row, others to the row itself while it is the only one
with that key and to a set of rows from the second on (a one-element set costs 216 bytes).
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable, ItemsView, Iterable, Iterator, Mapping, ValuesView
from typing import Any, Protocol

from sortedcontainers import SortedDict

from autopilot_sync.bindings.reducers import ReducerError
from autopilot_sync.bindings.tables import TableDef
from autopilot_sync.host.change_stamp import next_stamp
from autopilot_sync.host.hosted_module import HostedModule, tables_from_definition
from autopilot_sync.host.logtable import LogRows, is_log_shaped, log_store_parts
from autopilot_sync.host.row_cache import DecodedRows
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime.errors import DecodeError

Key = tuple[Any, ...]


class UniqueConstraintError(ReducerError):
    """An insert that would duplicate a unique key; it fails the reducer like any user error."""


class _Top:
    """Compares greater than every key component: the upper bound of a prefix range."""

    def __lt__(self, other: object) -> bool:
        return False

    def __gt__(self, other: object) -> bool:
        return not isinstance(other, _Top)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Top)

    def __hash__(self) -> int:
        return 0


TOP = _Top()

#: A value set under a key a `SortedDict` already holds: its sorted keys stay as they are, so the plain dict's set
#: is the whole of it (what `SortedDict.__setitem__` does after looking the key up again, one Python call fewer).
_set_present: Callable[[Any, Any, Any], None] = dict.__setitem__


def _shared_prefix(key: Key) -> Key:
    """The key with its leading string columns interned.

    The leading columns of a group are shared by many rows (a stream id): one string object for all of them instead
    of one per row, now that no decoded row keeps it alive anyway. Interned strings are freed with their last key.
    """
    if len(key) < 2 or type(key[0]) is not str:
        return key
    return (sys.intern(key[0]), *key[1:])


class RowMap(Mapping[bytes, tuple[Any, ...]]):
    """A table's rows kept as their BSATN bytes only, decoded when read.

    Reads as the `dict[bytes, row]` it replaces (`rows[b]`, `get`, `items()`, `values()`, `in`, `len`), so code that
    reads rows is unchanged; what it saves is the decoded tuple of every stored row (a 250-byte event: ~1,000 bytes).
    Membership and iteration over the bytes decode nothing. A dict with no values rather than a set: ~10 bytes more
    per row, for scans in insertion order as before.

    Reducers read the same few rows again and again (a stream's head, the limits row): the last `CACHED` rows read
    are kept decoded (`row_cache.DecodedRows`, shared with the log table kind).

    `stamp` moves on every `add` and `discard` (`change_stamp`): the only two ways its rows change.
    """

    CACHED = DecodedRows.CACHED

    __slots__ = ("_bytes", "_cache", "_decode", "stamp")

    def __init__(self, decode: Callable[[bytes], tuple[Any, ...]]) -> None:
        self._bytes: dict[bytes, None] = {}
        self._decode = decode
        self._cache = DecodedRows()
        self.stamp = next_stamp()

    def __getitem__(self, row_bytes: bytes) -> tuple[Any, ...]:
        if row_bytes not in self._bytes:
            raise KeyError(row_bytes)
        return self._cache.read(row_bytes, self._decode)

    def get(self, row_bytes: bytes, default: Any = None) -> Any:
        """The decoded row, or `default` when absent."""
        return self._cache.read(row_bytes, self._decode) if row_bytes in self._bytes else default

    def __contains__(self, row_bytes: object) -> bool:
        return row_bytes in self._bytes

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._bytes)

    def __len__(self) -> int:
        return len(self._bytes)

    def add(self, row_bytes: bytes, row: tuple[Any, ...] | None) -> None:
        """Store a row's bytes; its decoded form (when given) joins the cache: a row just written is the likeliest
        next read."""
        self._bytes[row_bytes] = None
        self.stamp = next_stamp()
        if row is not None:
            self._cache.keep(row_bytes, row)

    def discard(self, row_bytes: bytes, known: tuple[Any, ...] | None = None) -> tuple[Any, ...] | None:
        """Forget a row's bytes; the decoded row, or None when it was not there. `known`: the row these bytes
        encode, when the caller holds it (checked by the caller): returned instead of decoding them again."""
        if row_bytes not in self._bytes:
            return None
        del self._bytes[row_bytes]
        self.stamp = next_stamp()
        row = self._cache.pop(row_bytes, None)
        if row is None:
            return self._decode(row_bytes) if known is None else known
        return row

    def swap(
        self, old_bytes: bytes, new_bytes: bytes, new: tuple[Any, ...], known: tuple[Any, ...] | None = None
    ) -> tuple[Any, ...] | None:
        """`discard(old_bytes, known)` then `add(new_bytes, new)` in one step (an update: once per stream head and
        call); None, and nothing changed, when `old_bytes` is not there."""
        stored = self._bytes
        if old_bytes not in stored:
            return None
        del stored[old_bytes]
        stored[new_bytes] = None
        self.stamp = next_stamp()
        cache = self._cache
        old = cache.pop(old_bytes, None)
        if old is None:
            old = self._decode(old_bytes) if known is None else known
        cache.keep(new_bytes, new)
        return old


class StoredRows(Protocol):
    """A table's rows as every reader sees them (bytes → decoded row): a `RowMap`, or a log table's `LogRows`."""

    #: Moves on every change of the rows, never to a value any store held before (`change_stamp`).
    stamp: int

    def __getitem__(self, row_bytes: bytes) -> tuple[Any, ...]: ...
    def get(self, row_bytes: bytes, default: Any = None) -> Any: ...
    def __contains__(self, row_bytes: object) -> bool: ...
    def __iter__(self) -> Iterator[bytes]: ...
    def __len__(self) -> int: ...
    def items(self) -> ItemsView[bytes, tuple[Any, ...]]: ...
    def values(self) -> ValuesView[tuple[Any, ...]]: ...
    def add(self, row_bytes: bytes, row: tuple[Any, ...] | None) -> None: ...
    def discard(self, row_bytes: bytes, known: tuple[Any, ...] | None = None) -> tuple[Any, ...] | None: ...


class TableIndex(Protocol):
    """One indexed column group as readers use it: an `Index`, or a log table's `SeqIndex`/`HashIndex`."""

    columns: tuple[str, ...]
    positions: tuple[int, ...]
    unique: bool
    key_of: Callable[[tuple[Any, ...]], Key]

    @property
    def entries(self) -> Any: ...
    def add(self, key: Key, row_bytes: bytes) -> None: ...
    def load(self, entries: Iterable[tuple[Key, bytes]]) -> None: ...
    def remove(self, key: Key, row_bytes: bytes) -> None: ...
    def lookup(self, key: Key) -> Iterator[bytes]: ...
    def first(self, key: Key) -> bytes | None: ...
    def range(
        self, low: Key | None, high: Key | None, inclusive: tuple[bool, bool] = (True, True)
    ) -> Iterator[bytes]: ...


class Index:
    """One indexed column group."""

    def __init__(self, table: TableDef, columns: tuple[str, ...], unique: bool) -> None:
        self.columns = columns
        self.positions = tuple(table.column_index(c) for c in columns)
        self.unique = unique
        self.entries: SortedDict[Key, Any] = SortedDict()
        # Called on every insert, delete and lookup: a C-level getter instead of a generator expression.
        if len(self.positions) == 1:
            (position,) = self.positions
            self.key_of: Callable[[tuple[Any, ...]], Key] = lambda row: (row[position],)
        else:
            self.key_of = operator.itemgetter(*self.positions)

    def add(self, key: Key, row_bytes: bytes) -> None:
        if self.unique:
            self.entries[_shared_prefix(key)] = row_bytes
            return
        bucket = self.entries.get(key)
        if bucket is None:
            self.entries[_shared_prefix(key)] = row_bytes
        elif type(bucket) is bytes:
            if bucket != row_bytes:
                self.entries[key] = {bucket, row_bytes}
        else:
            bucket.add(row_bytes)

    def load(self, entries: Iterable[tuple[Key, bytes]]) -> None:
        """Add many (key, row) entries to an empty index: gathered in a dict, then sorted once."""
        gathered: dict[Key, Any] = {}
        unique = self.unique
        for key, row_bytes in entries:
            bucket = gathered.get(key)
            if bucket is None or unique:
                gathered[_shared_prefix(key) if bucket is None else key] = row_bytes
            elif type(bucket) is bytes:
                if bucket != row_bytes:
                    gathered[key] = {bucket, row_bytes}
            else:
                bucket.add(row_bytes)
        self.entries = SortedDict(gathered)

    def remove(self, key: Key, row_bytes: bytes) -> None:
        bucket = self.entries.get(key)
        if bucket is None:
            return
        if type(bucket) is bytes:
            if bucket == row_bytes:
                del self.entries[key]
            return
        bucket.discard(row_bytes)
        if len(bucket) == 1:
            (self.entries[key],) = bucket

    def replace(self, key: Key, old_bytes: bytes, new_bytes: bytes) -> None:
        """`remove(key, old_bytes)` then `add(key, new_bytes)`: a row updated without changing this key.

        Where `old_bytes` alone holds the key (every unique key, most others) the entry's value is swapped in place:
        the sorted keys are untouched, where removing and adding the key again cost two sorted-list updates.
        """
        entries = self.entries
        bucket = entries.get(key)
        if type(bucket) is bytes and bucket == old_bytes:
            _set_present(entries, key, new_bytes)  # the key is there: `SortedDict`'s own set would look again
            return
        self.remove(key, old_bytes)
        self.add(key, new_bytes)

    def first(self, key: Key) -> bytes | None:
        """The first row `lookup(key)` yields, or None; a whole unique key is read from its entry directly (a unique
        key holds one row's bytes: no generator per `find` or `update`)."""
        if self.unique and len(key) == len(self.columns):
            found: bytes | None = self.entries.get(key)
            return found
        return next(iter(self.lookup(key)), None)

    def lookup(self, key: Key) -> Iterator[bytes]:
        """Rows whose key equals `key`, or starts with it when `key` is a prefix of the column group."""
        if len(key) == len(self.columns):
            found = self.entries.get(key)
            if found is None:
                return
            if type(found) is bytes:
                yield found
            else:
                yield from list(found)
            return
        yield from self.range(key, (*key, TOP))

    def range(self, low: Key | None, high: Key | None, inclusive: tuple[bool, bool] = (True, True)) -> Iterator[bytes]:
        """Rows with `low <= key <= high` in key order (None = unbounded)."""
        entries = self.entries
        # One C-level pass for the values (a resume reads 10,000 keys of the (stream_id, seq) index here).
        for found in list(map(entries.__getitem__, entries.irange(low, high, inclusive))):
            if type(found) is bytes:
                yield found
            else:
                yield from list(found)


class TableStore:
    """The rows of one table and its indexes."""

    def __init__(self, table: TableDef) -> None:
        self.table = table
        #: The row type's codec: `codec.decode_prefix` gives (values, offset after) of a row at an offset; every row
        #: read and every TypeScript insert decodes through it (bsatn compiles one straight-line decoder per product).
        self.codec = bsatn.codec(table.row_type)
        self.make_row = table.row_class._make  # type: ignore[attr-defined]
        #: Where the primary key sits in a row (None without one): read on every `update`, so computed once here.
        self.pk_position = None if table.primary_key is None else table.column_index(table.primary_key)
        unique = set(table.unique_keys())
        # The leading columns every index key is made of: enough to index a stored row without decoding the rest.
        width = max((table.column_index(c) + 1 for group in table.all_indexes() for c in group), default=0)
        self._key_columns: bsatn.Decoder | None = None
        if width:
            key_type = at.product(*table.columns[:width])
            self._key_columns = bsatn.codec(key_type).decode_prefix
        #: A log-shaped table (`host/logtable.py`) keeps its rows per partition in one buffer, its indexes answered
        #: from it; every other table is a `RowMap` and sorted indexes. Both read and write alike from here on.
        self.log = self._key_columns is not None and is_log_shaped(table)
        self.rows: StoredRows
        self.indexes: dict[tuple[str, ...], TableIndex]
        if self.log and self._key_columns is not None:
            self.rows, self.indexes = log_store_parts(
                table, self.decode, self._key_columns, lambda group: Index(table, group, False).key_of, TOP
            )
        else:
            self.rows = RowMap(self.decode)
            self.indexes = {group: Index(table, group, group in unique) for group in table.all_indexes()}
        self.unique_indexes = [index for index in self.indexes.values() if index.unique]
        #: The rows as a log (`LogRows`), or None: a transaction's insert tries the log's append first.
        self.log_rows = self.rows if isinstance(self.rows, LogRows) else None
        #: Whether an update may replace a row in one step (`Transaction.update_row`): kept as a `RowMap`, not an event
        #: table, no auto-increment column.
        self.replaceable = self.log_rows is None and not table.event and not table.auto_inc
        #: The table's row class: a row already of it is stored as it is, not made again.
        self.row_class = table.row_class
        #: The earlier shapes' (column count, default tail), longest first; their codecs are compiled with the first
        #: row of an older shape (`_older_codecs`): ~10 codecs a start compiled for rows few stores ever hold.
        self._older_tails = _older_tails(table)
        self._older_codecs: list[tuple[bsatn.Codec, tuple[Any, ...]]] | None = None
        #: The module's own values kept with the table between calls (`TableHandle.memo`): never read here, gone
        #: with the store (made again by recovery starting over or a publish replacing the tables).
        self.memo: dict[str, object] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def encode(self, row: tuple[Any, ...]) -> bytes:
        """BSATN bytes of a row of this table (ValueError/TypeError when it does not fit)."""
        return self.codec.encode(row)

    def decode(self, data: bytes) -> tuple[Any, ...]:
        """A row from its BSATN bytes, as the table's named tuple."""
        values, end = self.codec.decode_prefix(data, 0)
        if end != len(data):
            raise DecodeError(f"{len(data) - end} trailing bytes after value")
        return self.make_row(values)  # type: ignore[no-any-return]

    @property
    def migrates(self) -> bool:
        """Whether rows of an older shape (before columns with defaults were added) can be read."""
        return bool(self._older_tails)

    def stored(self, data: bytes) -> tuple[bytes, tuple[Any, ...]]:
        """A row as stored on disk (snapshot or commit log) as today's bytes and row.

        Rows written before columns with defaults were added at the end of the table (SpacetimeDB's `AddColumns`
        automatic migration) are shorter: they decode with the older shape and get the defaults, re-encoded so the
        row's identity is today's bytes. The longest shape that decodes wins; current rows never reach this path.
        """
        try:
            return data, self.decode(data)
        except DecodeError:
            if self._older_codecs is None:
                self._older_codecs = [
                    (bsatn.codec(at.product(*self.table.columns[:count])), tail) for count, tail in self._older_tails
                ]
            for codec, tail in self._older_codecs:
                try:
                    values = codec.decode(data)
                except DecodeError:
                    continue
                row = self.make_row((*values, *tail))
                return self.encode(row), row
            raise

    def check_unique(self, row: tuple[Any, ...], row_bytes: bytes) -> None:
        """Raise UniqueConstraintError when another row already holds one of this row's unique keys."""
        for index in self.unique_indexes:
            existing = index.entries.get(index.key_of(row))
            if existing is not None and existing != row_bytes:
                columns = ", ".join(index.columns)
                raise UniqueConstraintError(
                    f"unique_violation: {self.table.name}({columns}) = {index.key_of(row)!r} already exists"
                )

    def put(self, row_bytes: bytes, row: tuple[Any, ...]) -> None:
        """Store a row already checked against constraints (`row` is its decoded form, for the index keys)."""
        self.rows.add(row_bytes, row)
        if self.log_rows is not None:
            return  # a log's indexes are its partitions: `LogRows.add` kept them
        for index in self.indexes.values():
            index.add(index.key_of(row), row_bytes)

    def put_current(self, row_bytes: bytes) -> None:
        """Store a row known to be in today's shape (a snapshot written under this schema), decoding only the
        leading columns its index keys need, or nothing when the table has no index."""
        if isinstance(self.rows, LogRows):
            self.rows.add_stored((row_bytes,))
            return
        self.rows.add(row_bytes, None)
        if self._key_columns is None:
            return
        prefix, _ = self._key_columns(row_bytes, 0)
        for index in self.indexes.values():
            index.add(index.key_of(prefix), row_bytes)

    def put_current_many(self, rows: list[bytes]) -> None:
        """`put_current` for each of `rows` in order (a replayed transaction's inserts): a log table appends runs of
        one partition in one step (`LogRows.add_stored`)."""
        if isinstance(self.rows, LogRows):
            self.rows.add_stored(rows)
            return
        for row_bytes in rows:
            self.put_current(row_bytes)

    def load_current(self, stored: Iterable[bytes]) -> None:
        """`put_current` for every row of a snapshot; into an empty table each index is built with one sort instead
        of one sorted insertion per row; a log table takes them as one run (`LogRows.add_stored`)."""
        if isinstance(self.rows, LogRows):
            self.rows.add_stored(list(stored))
            return
        if self.rows or self._key_columns is None or self.log:
            for row_bytes in stored:
                self.put_current(row_bytes)
            return
        decode = self._key_columns
        rows = list(stored)
        prefixes = [decode(row_bytes, 0)[0] for row_bytes in rows]
        for row_bytes in rows:
            self.rows.add(row_bytes, None)
        for index in self.indexes.values():
            index.load(zip(map(index.key_of, prefixes), rows, strict=True))

    def take(self, row_bytes: bytes) -> tuple[Any, ...] | None:
        """Remove a row by its bytes; returns it, or None when absent."""
        row = self.rows.discard(row_bytes)
        if row is None:
            return None
        for index in self.indexes.values():
            index.remove(index.key_of(row), row_bytes)
        return row

    def replace(
        self, old_bytes: bytes, new_bytes: bytes, new: tuple[Any, ...], known: tuple[Any, ...] | None = None
    ) -> tuple[Any, ...] | None:
        """`take(old_bytes)` then `put(new_bytes, new)` for a table kept as a `RowMap` (not a log): an update.

        An index whose key the update keeps swaps its entry in place (`Index.replace`). The constraints are the
        caller's to check, as for `put`; so is `known`: the row `old_bytes` encode, when the caller holds it (not
        decoded again). Returns the old row, or None (nothing changed) when it was not there.
        """
        rows = self.rows
        if isinstance(rows, RowMap):
            old = rows.swap(old_bytes, new_bytes, new, known)
            if old is None:
                return None
        else:
            old = rows.discard(old_bytes, known)
            if old is None:
                return None
            rows.add(new_bytes, new)
        for index in self.indexes.values():
            key_of = index.key_of
            old_key, new_key = key_of(old), key_of(new)
            if old_key == new_key and isinstance(index, Index):
                index.replace(old_key, old_bytes, new_bytes)
            else:
                index.remove(old_key, old_bytes)
                index.add(new_key, new_bytes)
        return old

    def index_for(self, columns: tuple[str, ...]) -> TableIndex:
        """The index over exactly `columns`, or whose leading columns are `columns`."""
        index = self.indexes.get(columns)
        if index is not None:
            return index
        for group, candidate in self.indexes.items():
            if group[: len(columns)] == columns:
                return candidate
        raise KeyError(f"table {self.table.name} has no index on ({', '.join(columns)})")


def _older_tails(table: TableDef) -> list[tuple[int, tuple[Any, ...]]]:
    """Every earlier shape of the table a row may be stored in: a prefix of its columns whose missing tail all have
    defaults, longest first, as the prefix's column count and the default values of the tail."""
    defaults = dict(table.defaults)
    shapes: list[tuple[int, tuple[Any, ...]]] = []
    count = len(table.columns)
    while count > 0 and table.columns[count - 1][0] in defaults:
        count -= 1
        shapes.append((count, tuple(defaults[name] for name, _ in table.columns[count:])))
    return shapes


class Datastore:
    """Every table of a module."""

    def __init__(self, module: HostedModule, system_tables: tuple[TableDef, ...] = ()) -> None:
        self.module = module
        self.tables: dict[str, TableStore] = {
            table.name: TableStore(table) for table in tables_from_definition(module.definition())
        }
        for table in system_tables:
            self.tables[table.name] = TableStore(table)

    def __getitem__(self, name: str) -> TableStore:
        try:
            return self.tables[name]
        except KeyError:
            raise KeyError(f"no such table: {name}") from None

    def clear(self) -> None:
        """Forget every row of every table (recovery starting over from an older snapshot); the stores stay the same
        objects."""
        for store in self.tables.values():
            TableStore.__init__(store, store.table)

    def row_counts(self) -> dict[str, int]:
        """Rows per table, for metrics and status."""
        return {name: len(store) for name, store in self.tables.items()}
