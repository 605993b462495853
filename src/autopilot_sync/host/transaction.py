"""One reducer's transaction: writes applied in place with an undo log, rolled back whole on error.

Reducers run one at a time on the host's event loop, so transactions are serializable by construction; the undo log
keeps rollback exact (indexes included) without copying tables.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autopilot_sync.bindings.context import ReducerContext
from autopilot_sync.bindings.reducers import ReducerError
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.datastore import Datastore, TableStore
from autopilot_sync.host.system_tables import ST_SEQUENCE
from autopilot_sync.spacetime.values import ConnectionId, Identity, Timestamp

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class TableChange:
    """Rows one transaction inserted into and deleted from one table, as (bytes, row) pairs."""

    table: str
    inserts: tuple[tuple[bytes, Row], ...]
    deletes: tuple[tuple[bytes, Row], ...]


@dataclass(frozen=True, slots=True)
class CommittedTx:
    """A committed transaction: what the commit log stores and what subscribers are told about."""

    offset: int
    timestamp: Timestamp
    reducer: str
    caller: Caller
    changes: tuple[TableChange, ...]
    origin: Any = None

    def change_for(self, table: str) -> TableChange | None:
        """This transaction's change to one table, if any."""
        return next((c for c in self.changes if c.table == table), None)


@dataclass(frozen=True, slots=True)
class Savepoint:
    """A point inside a transaction that `Transaction.rollback_to` can return to."""

    undo_length: int
    inserted: dict[str, dict[bytes, Row]]
    deleted: dict[str, dict[bytes, Row]]


class Transaction:
    """Writes of one reducer call, applied to the datastore immediately and undoable until commit."""

    def __init__(self, datastore: Datastore) -> None:
        self.datastore = datastore
        self._undo: list[tuple[bool, TableStore, bytes, Row]] = []
        self._inserted: dict[str, dict[bytes, Row]] = {}
        self._deleted: dict[str, dict[bytes, Row]] = {}

    def insert(self, store: TableStore, values: Sequence[Any], encoded: bytes | None = None) -> Row:
        """Insert a row (auto-increment columns given as 0 are allocated); an identical row is a no-op.

        `encoded`: the BSATN bytes `values` were decoded from (a TypeScript module's insert), used as the row's
        identity unless a sequence column was allocated; BSATN is canonical, so they are the bytes encoding would
        make, and the insert skips encoding the row a second time.
        """
        row: Row = values if type(values) is store.row_class else store.make_row(values)  # type: ignore[assignment]
        for column in store.table.auto_inc:
            position = store.table.column_index(column)
            if row[position] == 0:
                row = row._replace(**{column: self._next_sequence(f"{store.table.name}.{column}")})  # type: ignore[attr-defined]
                encoded = None
        if encoded is not None:
            row_bytes = encoded
        else:
            try:
                row_bytes = store.encode(row)
            except (TypeError, ValueError) as exc:
                raise ReducerError(f"invalid_row: {store.table.name}: {exc}") from None
        if store.table.event:
            self._inserted.setdefault(store.table.name, {})[row_bytes] = row
            return row
        log = store.log_rows
        if log is None or not log.append_new(row_bytes, row):  # a log's append is new and unique by its place
            if row_bytes in store.rows:
                return row
            store.check_unique(row, row_bytes)
            store.put(row_bytes, row)
        self._undo.append((True, store, row_bytes, row))
        self._note_inserted(store.table.name, row_bytes, row)
        return row

    def delete_bytes(self, store: TableStore, row_bytes: bytes) -> bool:
        """Delete a row by its bytes; False when it is not there."""
        row = store.take(row_bytes)
        if row is None:
            return False
        self._undo.append((False, store, row_bytes, row))
        self._note_deleted(store.table.name, row_bytes, row)
        return True

    def update_row(self, store: TableStore, old_bytes: bytes, new: Row, known: Row | None = None) -> Row:
        """Replace the stored row `old_bytes` with `new` (of the table's row class): `delete_bytes` then `insert`.

        In one step for a plain table (no log, no event table, no auto-increment column): one encode, the unique
        check against every row but the one replaced, and the indexes whose key is unchanged swapped in place
        (`TableStore.replace`); the undo log and the net changes are the two steps' (tests/host/
        test_update_row.py checks it against them). Anything else takes the two steps. `known`: the row
        `old_bytes` encode, when the caller has checked that it holds it (then not decoded again).
        """
        new_bytes = self._replacing(store, old_bytes, new)
        if new_bytes is None:  # the two steps, with their exact effects when they fail midway
            self.delete_bytes(store, old_bytes)
            return self.insert(store, new)
        if new_bytes == old_bytes:
            return new  # deleting and inserting the same row changes nothing
        old = store.replace(old_bytes, new_bytes, new, known)
        if old is None:  # not reached: `_replacing` saw the row
            raise ReducerError(f"not_found: {store.table.name}")
        undo = self._undo
        undo.append((False, store, old_bytes, old))
        undo.append((True, store, new_bytes, new))
        name = store.table.name
        self._note_deleted(name, old_bytes, old)
        self._note_inserted(name, new_bytes, new)
        return new

    def _note_inserted(self, name: str, row_bytes: bytes, row: Row) -> None:
        """Book an insert in the net changes: it cancels a delete of the same row earlier in this transaction (the
        row is back as it was), else it is a new row of the commit. The one rule `insert` and `update_row` share."""
        deleted = self._deleted.get(name)
        if deleted is not None and row_bytes in deleted:
            del deleted[row_bytes]
        else:
            self._inserted.setdefault(name, {})[row_bytes] = row

    def _note_deleted(self, name: str, row_bytes: bytes, row: Row) -> None:
        """Book a delete in the net changes: it cancels an insert of the same row earlier in this transaction (the
        row never existed outside it), else the commit deletes it. The one rule `delete_bytes` and `update_row`
        share."""
        inserted = self._inserted.get(name)
        if inserted is not None and row_bytes in inserted:
            del inserted[row_bytes]
        else:
            self._deleted.setdefault(name, {})[row_bytes] = row

    @staticmethod
    def _replacing(store: TableStore, old_bytes: bytes, new: Row) -> bytes | None:
        """`new`'s bytes when `update_row` may replace in one step; None for the two steps: a log, event or
        auto-increment table, a row not there, a row that does not encode or would break a unique key (the two
        steps raise the same error, after the same delete)."""
        if not store.replaceable or old_bytes not in store.rows:
            return None
        try:
            new_bytes = store.encode(new)
        except (TypeError, ValueError):
            return None
        for index in store.unique_indexes:
            existing = index.entries.get(index.key_of(new))
            if existing is not None and existing != old_bytes and existing != new_bytes:
                return None
        return new_bytes

    def _next_sequence(self, name: str) -> int:
        store = self.datastore[ST_SEQUENCE.name]
        current = next(iter(store.indexes[("sequence",)].lookup((name,))), None)
        value = 1
        if current is not None:
            value = store.rows[current][1]
            self.delete_bytes(store, current)
        self.insert(store, (name, value + 1))
        return int(value)

    def rollback(self) -> None:
        """Undo every write, newest first."""
        for was_insert, store, row_bytes, row in reversed(self._undo):
            if was_insert:
                store.take(row_bytes)
            else:
                store.put(row_bytes, row)
        self._undo.clear()
        self._inserted.clear()
        self._deleted.clear()

    def savepoint(self) -> Savepoint:
        """Where `rollback_to` returns: the undo log's length and a copy of the net changes so far (cheap at a
        call's start, when the transaction holds little or nothing)."""
        inserted = {name: dict(rows) for name, rows in self._inserted.items()}
        deleted = {name: dict(rows) for name, rows in self._deleted.items()}
        return Savepoint(len(self._undo), inserted, deleted)

    def rollback_to(self, point: Savepoint) -> None:
        """Undo every write made after `point`, newest first; the writes before it stay (a call run again)."""
        while len(self._undo) > point.undo_length:
            was_insert, store, row_bytes, row = self._undo.pop()
            if was_insert:
                store.take(row_bytes)
            else:
                store.put(row_bytes, row)
        self._inserted = {name: dict(rows) for name, rows in point.inserted.items()}
        self._deleted = {name: dict(rows) for name, rows in point.deleted.items()}

    def changes(self) -> tuple[TableChange, ...]:
        """The net effect per table (an insert and delete of the same row cancel out)."""
        return net_changes(self._inserted, self._deleted)


class TableHandle:
    """A table as a reducer sees it: reads see the transaction's own writes."""

    def __init__(self, tx: Transaction, store: TableStore) -> None:
        self._tx = tx
        self._store = store
        self.row = store.table.row_class

    def insert(self, row: Sequence[Any]) -> Row:
        """Insert a row and return it as stored (auto-increment filled in)."""
        return self._tx.insert(self._store, row)

    def delete(self, row: Sequence[Any]) -> bool:
        """Delete an exact row; False when absent."""
        return self._tx.delete_bytes(self._store, self._store.encode(tuple(row)))

    def find(self, column: str | tuple[str, ...], value: Any) -> Row | None:
        """The row whose unique column (group) equals `value`, if any."""
        columns, key = _key(column, value)
        found = self._store.index_for(columns).first(key)
        return None if found is None else self._store.rows[found]

    def filter(self, column: str | tuple[str, ...], value: Any) -> list[Row]:
        """Rows whose indexed column (group, or its leading columns) equals `value`, in index order."""
        columns, key = _key(column, value)
        index = self._store.index_for(columns)
        return [self._store.rows[b] for b in index.lookup(key)]

    def range(self, columns: tuple[str, ...], low: tuple[Any, ...] | None, high: tuple[Any, ...] | None) -> list[Row]:
        """Rows with `low <= key <= high` on an index whose leading columns are `columns`."""
        index = self._store.index_for(columns)
        return [self._store.rows[b] for b in index.range(low, high)]

    def update(self, row: Sequence[Any], old: Row | None = None) -> Row:
        """Replace the row with the same primary key (it must exist).

        `old`: the row as stored now, when the caller holds it (a `find`, `insert` or `update` returned it, of the
        table's row class): taken as the replaced row once its encoding is checked to be the stored bytes, instead of
        decoding those again (a row that is not the stored one is ignored). A table of more rows than the host keeps
        decoded (`row_cache`) would decode the replaced row at every update: the sync module's stream heads.
        """
        store = self._store
        pk, position = store.table.primary_key, store.pk_position
        if pk is None or position is None:
            raise ReducerError(f"no_primary_key: table {store.table.name} has no primary key")
        new: Row = row if type(row) is store.row_class else store.make_row(row)  # type: ignore[assignment]
        # The old row's bytes come from the index: encoding it again to delete it cost one BSATN encode per update.
        old_bytes = store.indexes[(pk,)].first((new[position],))
        if old_bytes is None:
            raise ReducerError(f"not_found: {store.table.name} has no row with {pk} = {new[0]!r}")
        if old is not None and (type(old) is not store.row_class or not _encodes_to(store, old, old_bytes)):
            old = None
        return self._tx.update_row(store, old_bytes, new, old)

    def delete_by(self, column: str | tuple[str, ...], value: Any) -> int:
        """Delete every row whose indexed column (group) equals `value`; returns how many.

        By the bytes the index holds: decoding each row and encoding it again to find those same bytes was most of
        `client_disconnected` (its presence row, at every close; docs/performance.md "Round 5 — storm2")."""
        columns, key = _key(column, value)
        found = list(self._store.index_for(columns).lookup(key))
        for row_bytes in found:
            self._tx.delete_bytes(self._store, row_bytes)
        return len(found)

    def __iter__(self) -> Iterator[Row]:
        return iter(list(self._store.rows.values()))

    @property
    def stamp(self) -> int:
        """Moves on every change of the table's rows, never back to an earlier value (`host/change_stamp.py`)."""
        return self._store.rows.stamp

    @property
    def memo(self) -> dict[str, object]:
        """The module's own values kept with the table between calls (`TableStore.memo`)."""
        return self._store.memo

    def count(self) -> int:
        """Number of rows."""
        return len(self._store.rows)


def net_changes(
    inserted: Mapping[str, Mapping[bytes, Row]], deleted: Mapping[str, Mapping[bytes, Row]]
) -> tuple[TableChange, ...]:
    """One `TableChange` per table with rows inserted or deleted: the tables inserted into first, in their order, then
    the tables only deleted from; a table whose two maps are empty is left out.

    Read in two passes over the maps themselves: every commit calls this, and building the union of the names first
    (a list, a dict, a list) and an empty default map per lookup cost ~20% of it (~5,000 instructions per one-event
    call, docs/performance.md "Round 8 — percall").
    """
    out = []
    for name, rows in inserted.items():
        gone = deleted.get(name)
        if rows or gone:
            out.append(TableChange(name, tuple(rows.items()), tuple(gone.items()) if gone else ()))
    for name, gone in deleted.items():
        if gone and name not in inserted:
            out.append(TableChange(name, (), tuple(gone.items())))
    return tuple(out)


def _encodes_to(store: TableStore, row: Row, row_bytes: bytes) -> bool:
    """Whether `row` encodes to exactly `row_bytes` (BSATN is canonical: then they are the same row)."""
    try:
        return store.encode(row) == row_bytes
    except (TypeError, ValueError):
        return False


def _key(column: str | tuple[str, ...], value: Any) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    if isinstance(column, str):
        return (column,), (value,)
    return column, tuple(value)


class DbView:
    """`ctx.db`: every module table by name (`ctx.db.message` or `ctx.db["message"]`)."""

    def __init__(self, tx: Transaction) -> None:
        self._tx = tx
        self._handles: dict[str, TableHandle] = {}

    def __getitem__(self, name: str) -> TableHandle:
        handle = self._handles.get(name)
        if handle is None:
            handle = TableHandle(self._tx, self._tx.datastore[name])
            self._handles[name] = handle
        return handle

    def __getattr__(self, name: str) -> TableHandle:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            handle = self[name]
        except KeyError:
            raise AttributeError(name) from None
        self.__dict__[name] = handle  # the next `ctx.db.<name>` of this transaction is a plain attribute read
        return handle


@dataclass(frozen=True, slots=True)
class HostReducerContext:
    """What a reducer gets on this host: the caller, the transaction's timestamp and the tables.

    Implements `autopilot_sync.bindings.ReducerContext`, the protocol modules are written against (checked below).
    """

    caller: Caller
    timestamp: Timestamp
    db: DbView
    transaction: Transaction
    """The call's transaction, for modules that work at the byte level (a JavaScript module's syscalls)."""

    @property
    def sender(self) -> Identity:
        """The caller's identity."""
        return self.caller.identity

    @property
    def connection_id(self) -> ConnectionId | None:
        """The caller's connection, when the call came over one."""
        return self.caller.connection_id

    @property
    def claims(self) -> Mapping[str, Any]:
        """The caller's verified token claims (empty for host-internal calls)."""
        return self.caller.claims


def _implements_protocol(ctx: HostReducerContext) -> ReducerContext:
    """Never called: makes mypy check that the host's context satisfies the protocol modules are written against."""
    return ctx
