"""In-memory tables with B-tree indexes: the committed state the host serves.

A row is identified by its BSATN bytes (tables are sets, as in SpacetimeDB), which also makes the bytes available
for the commit log and for subscribers without encoding twice. Every indexed column group is a sorted map, so point
and range lookups are O(log n); unique groups map a key to one row, others to a set of rows.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from typing import Any

from sortedcontainers import SortedDict

from autopilot_sync.bindings.reducers import ReducerError
from autopilot_sync.bindings.tables import TableDef
from autopilot_sync.host.hosted_module import HostedModule, tables_from_definition
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
            self.entries[key] = row_bytes
        else:
            bucket = self.entries.get(key)
            if bucket is None:
                self.entries[key] = {row_bytes}
            else:
                bucket.add(row_bytes)

    def remove(self, key: Key, row_bytes: bytes) -> None:
        if self.unique:
            if self.entries.get(key) == row_bytes:
                del self.entries[key]
            return
        bucket = self.entries.get(key)
        if bucket is not None:
            bucket.discard(row_bytes)
            if not bucket:
                del self.entries[key]

    def lookup(self, key: Key) -> Iterator[bytes]:
        """Rows whose key equals `key`, or starts with it when `key` is a prefix of the column group."""
        if len(key) == len(self.columns):
            found = self.entries.get(key)
            if found is None:
                return
            if self.unique:
                yield found
            else:
                yield from list(found)
            return
        yield from self.range(key, (*key, TOP))

    def range(self, low: Key | None, high: Key | None, inclusive: tuple[bool, bool] = (True, True)) -> Iterator[bytes]:
        """Rows with `low <= key <= high` in key order (None = unbounded)."""
        for key in list(self.entries.irange(low, high, inclusive)):
            found = self.entries[key]
            if self.unique:
                yield found
            else:
                yield from list(found)


class TableStore:
    """The rows of one table and its indexes."""

    def __init__(self, table: TableDef) -> None:
        self.table = table
        self.codec = bsatn.codec(table.row_type)
        self.make_row = table.row_class._make  # type: ignore[attr-defined]
        #: Where the primary key sits in a row (None without one): read on every `update`, so computed once here.
        self.pk_position = None if table.primary_key is None else table.column_index(table.primary_key)
        self.rows: dict[bytes, tuple[Any, ...]] = {}
        unique = set(table.unique_keys())
        self.indexes: dict[tuple[str, ...], Index] = {
            group: Index(table, group, group in unique) for group in table.all_indexes()
        }
        self.unique_indexes = [index for index in self.indexes.values() if index.unique]
        self._older_shapes = _older_shapes(table)

    def __len__(self) -> int:
        return len(self.rows)

    def encode(self, row: tuple[Any, ...]) -> bytes:
        """BSATN bytes of a row of this table (ValueError/TypeError when it does not fit)."""
        return self.codec.encode(row)

    def decode(self, data: bytes) -> tuple[Any, ...]:
        """A row from its BSATN bytes, as the table's named tuple."""
        return self.make_row(self.codec.decode(data))  # type: ignore[no-any-return]

    @property
    def migrates(self) -> bool:
        """Whether rows of an older shape (before columns with defaults were added) can be read."""
        return bool(self._older_shapes)

    def stored(self, data: bytes) -> tuple[bytes, tuple[Any, ...]]:
        """A row as stored on disk (snapshot or commit log) as today's bytes and row.

        Rows written before columns with defaults were added at the end of the table (SpacetimeDB's `AddColumns`
        automatic migration) are shorter: they decode with the older shape and get the defaults, re-encoded so the
        row's identity is today's bytes. The longest shape that decodes wins; current rows never reach this path.
        """
        try:
            return data, self.decode(data)
        except DecodeError:
            for codec, tail in self._older_shapes:
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
        """Store a row already checked against constraints."""
        self.rows[row_bytes] = row
        for index in self.indexes.values():
            index.add(index.key_of(row), row_bytes)

    def take(self, row_bytes: bytes) -> tuple[Any, ...] | None:
        """Remove a row by its bytes; returns it, or None when absent."""
        row = self.rows.pop(row_bytes, None)
        if row is not None:
            for index in self.indexes.values():
                index.remove(index.key_of(row), row_bytes)
        return row

    def index_for(self, columns: tuple[str, ...]) -> Index:
        """The index over exactly `columns`, or whose leading columns are `columns`."""
        index = self.indexes.get(columns)
        if index is not None:
            return index
        for group, candidate in self.indexes.items():
            if group[: len(columns)] == columns:
                return candidate
        raise KeyError(f"table {self.table.name} has no index on ({', '.join(columns)})")


def _older_shapes(table: TableDef) -> list[tuple[bsatn.Codec, tuple[Any, ...]]]:
    """Every earlier shape of the table a row may be stored in: a prefix of its columns whose missing tail all have
    defaults, longest first, with the codec of the prefix and the default values of the tail."""
    defaults = dict(table.defaults)
    shapes: list[tuple[bsatn.Codec, tuple[Any, ...]]] = []
    count = len(table.columns)
    while count > 0 and table.columns[count - 1][0] in defaults:
        count -= 1
        tail = tuple(defaults[name] for name, _ in table.columns[count:])
        shapes.append((bsatn.codec(at.product(*table.columns[:count])), tail))
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

    def row_counts(self) -> dict[str, int]:
        """Rows per table, for metrics and status."""
        return {name: len(store) for name, store in self.tables.items()}
