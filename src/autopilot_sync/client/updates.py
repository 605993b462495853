"""Server row containers → cache operations: every row checked to decode before the cache sees any of them.

Pure functions over the wire dataclasses and the schema. A table the schema does not know or a row that does not
decode is a `ProtocolError`, raised before anything is applied, which is what keeps the cache whole on bad input.
"""

from __future__ import annotations

from autopilot_sync.client.cache import RowBatch, RowOp
from autopilot_sync.client.errors import ProtocolError, ProtocolErrorKind
from autopilot_sync.client.gc_pause import MIN_ROWS, paused_gc
from autopilot_sync.client.schema import ClientSchema, TableSchema
from autopilot_sync.spacetime.errors import DecodeError
from autopilot_sync.spacetime.messages import (
    BsatnRowList,
    EventTableRows,
    PersistentTableRows,
    QueryRows,
    TransactionUpdate,
)

#: A live update's row list is kept undecoded (`RowBatch`) from this many rows: a single row (one event's
#: `TransactionUpdate`) is decoded once here, where the lazy path would decode it to check it, then again for the
#: first callback that reads it.
LIVE_LAZY_FROM = 2


def _table(schema: ClientSchema, name: str) -> TableSchema:
    table = schema.tables.get(name)
    if table is None:
        raise ProtocolError(ProtocolErrorKind.UNKNOWN_TABLE, f"rows for table {name!r}, which the schema lacks")
    return table


def _ops(
    table: TableSchema, query_set_id: int, rows: BsatnRowList, insert: bool, event: bool = False, lazy_from: int = 0
) -> list[RowOp] | list[RowBatch]:
    if table.decodes_lazily and not event and len(rows) >= lazy_from:
        # Checked now, decoded when read: see `RowBatch`.
        try:
            checked = table.check_row_list(rows)
        except DecodeError as exc:
            raise ProtocolError(ProtocolErrorKind.BAD_ROW, f"table {table.name}: {exc}") from None
        return [RowBatch(query_set_id, table.name, insert, checked, table.row_of)]
    raws = rows.rows()
    if len(raws) < MIN_ROWS:  # a live update's few rows: no pause to take
        return _decoded_ops(table, query_set_id, raws, insert, event)
    with paused_gc(len(raws)):
        return _decoded_ops(table, query_set_id, raws, insert, event)


def _decoded_ops(
    table: TableSchema, query_set_id: int, raws: list[bytes], insert: bool, event: bool
) -> list[RowOp] | list[RowBatch]:
    try:
        decoded = table.decode_rows(raws)
    except DecodeError as exc:
        raise ProtocolError(ProtocolErrorKind.BAD_ROW, f"table {table.name}: {exc}") from None
    name = table.name
    pairs = zip(raws, decoded, strict=True)
    return [RowOp(query_set_id, name, insert, key, raw, row, event) for raw, (key, row) in pairs]


def live_ops(table: TableSchema, query_set_id: int, rows: BsatnRowList, insert: bool) -> list[RowOp | RowBatch]:
    """A live update's operations for one row list (`ops_from_transaction`'s per-entry step, for its fast path)."""
    return list(_ops(table, query_set_id, rows, insert, lazy_from=LIVE_LAZY_FROM))


def one_row_ops(table: TableSchema, query_set_id: int, raw: bytes) -> list[RowOp | RowBatch]:
    """The operation of a live update's one inserted row: what `_ops` makes of a one-row list (decoded now)."""
    return list(_decoded_ops(table, query_set_id, [raw], True, False))


def ops_from_query_rows(
    schema: ClientSchema, query_set_id: int, rows: QueryRows, insert: bool
) -> list[RowOp | RowBatch]:
    """Operations for a snapshot of rows entering (`SubscribeApplied`) or leaving a query set."""
    out: list[RowOp | RowBatch] = []
    for single in rows.tables:
        out.extend(_ops(_table(schema, single.table), query_set_id, single.rows, insert))
    return out


def ops_from_transaction(schema: ClientSchema, update: TransactionUpdate) -> list[RowOp | RowBatch]:
    """Operations for one transaction's effect on every query set it touched (deletes before inserts per set)."""
    out: list[RowOp | RowBatch] = []
    for query_set in update.query_sets:
        for table_update in query_set.tables:
            table = _table(schema, table_update.table_name)
            for entry in table_update.rows:
                if isinstance(entry, PersistentTableRows):
                    out.extend(_ops(table, query_set.query_set_id, entry.deletes, False, lazy_from=LIVE_LAZY_FROM))
                    out.extend(_ops(table, query_set.query_set_id, entry.inserts, True, lazy_from=LIVE_LAZY_FROM))
                elif isinstance(entry, EventTableRows):
                    out.extend(_ops(table, query_set.query_set_id, entry.events, True, event=True))
    return out
