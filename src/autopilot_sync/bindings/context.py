"""What a reducer gets: the `ReducerContext` protocol, which the host implements (`host/transaction.py`).

A protocol rather than the host's class, so a module type-checks against this package alone and the same module
code could be handed any implementation (our host, a test double) without importing the host.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from autopilot_sync.bindings.tables import Row
from autopilot_sync.spacetime.values import ConnectionId, Identity, Timestamp


class TableAccess(Protocol):
    """One table as a reducer sees it: reads see the transaction's own writes."""

    row: type
    """The table's row class (a namedtuple in column order)."""

    def insert(self, row: Sequence[Any]) -> Row:
        """Insert a row and return it as stored (auto-increment columns given as 0 filled in)."""
        ...

    def delete(self, row: Sequence[Any]) -> bool:
        """Delete an exact row; False when absent."""
        ...

    def find(self, column: str | tuple[str, ...], value: Any) -> Row | None:
        """The row whose unique column (group) equals `value`, if any."""
        ...

    def filter(self, column: str | tuple[str, ...], value: Any) -> list[Row]:
        """Rows whose indexed column (group, or its leading columns) equals `value`, in index order."""
        ...

    def range(self, columns: tuple[str, ...], low: tuple[Any, ...] | None, high: tuple[Any, ...] | None) -> list[Row]:
        """Rows with `low <= key <= high` on an index whose leading columns are `columns`."""
        ...

    def update(self, row: Sequence[Any], old: Row | None = None) -> Row:
        """Replace the row with the same primary key (it must exist). `old`: the row as stored now, when the caller
        holds it (what `find`, `insert` or `update` returned): the host may take it instead of reading the row again."""
        ...

    def delete_by(self, column: str | tuple[str, ...], value: Any) -> int:
        """Delete every row whose indexed column (group) equals `value`; returns how many."""
        ...

    def __iter__(self) -> Iterator[Row]: ...

    def count(self) -> int:
        """Number of rows."""
        ...

    @property
    def stamp(self) -> int:
        """A value that moves on every change of the table's rows (this call's writes, a rollback, another call's,
        recovery, another module's) and never returns to an earlier one: what a module checks values it keeps in
        `memo` against before trusting them."""
        ...

    @property
    def memo(self) -> dict[str, object]:
        """The module's own values kept with the table between calls (derived from its rows, e.g. a per-key view a
        hot reducer reads instead of finding rows): the host never reads them and drops them with the table. Only
        as true as the module keeps them: record `stamp` with them and start over when it moved."""
        ...


class Tables(Protocol):
    """`ctx.db`: every module table by name (`ctx.db.sync_event` or `ctx.db["sync_event"]`)."""

    def __getitem__(self, name: str) -> TableAccess: ...

    def __getattr__(self, name: str) -> TableAccess: ...


class ReducerContext(Protocol):
    """The caller, the transaction's timestamp and the tables: everything a reducer may use."""

    @property
    def timestamp(self) -> Timestamp:
        """When the transaction runs (one value for the whole call)."""
        ...

    @property
    def db(self) -> Tables:
        """The module's tables, inside this call's transaction."""
        ...

    @property
    def sender(self) -> Identity:
        """The caller's identity."""
        ...

    @property
    def connection_id(self) -> ConnectionId | None:
        """The caller's connection, when the call came over one."""
        ...

    @property
    def claims(self) -> Mapping[str, Any]:
        """The caller's verified token claims (empty for host-internal calls): reducers authorize from these."""
        ...
