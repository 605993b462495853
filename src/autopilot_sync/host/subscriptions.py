"""The subscription engine: per client, query sets of compiled queries; initial rows, then per-transaction deltas.

Pure and synchronous (no sockets, no clock): the WebSocket layer feeds it requests and committed transactions and
sends what it returns. Everything runs on the event loop between transactions, so `subscribe` reads a consistent
snapshot, and the engine offset it records marks which later transactions the snapshot already contains.

Cost per transaction is proportional to the rows it changed and the queries those rows match, never to the number of
tables' rows or subscribers: a query with a top-level `column = literal` conjunct is filed under (table, column,
value), and each changed row looks up only its own values; the other queries sit in a per-table list that every change
to that table visits. Row bytes come from the `CommittedTx` (encoded once, by the transaction) and a row list shared
by many clients with the same result is packed once.

Within one query set rows have set semantics: a row matched by two queries of the same set appears once, in the
initial rows and in every delta alike, so the client's per-set reference counts stay exact. Rows matching several
query sets appear under each.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from autopilot_sync.host.datastore import Datastore
from autopilot_sync.host.sql import (
    SelectPlan,
    SqlContext,
    SqlError,
    compile_subscription,
    equality_terms,
    matching_rows,
)
from autopilot_sync.host.transaction import CommittedTx
from autopilot_sync.spacetime.messages import (
    BsatnRowList,
    EventTableRows,
    PersistentTableRows,
    QueryRows,
    QuerySetUpdate,
    SingleTableRows,
    SubscribeApplied,
    SubscriptionError,
    TableUpdate,
    UnsubscribeApplied,
)
from autopilot_sync.spacetime.values import Identity

Client = Hashable
Row = tuple[Any, ...]

#: Most queries one Subscribe may carry (the real host has no documented limit; this bounds one request's work).
MAX_QUERIES_PER_SET = 256


@dataclass(eq=False, slots=True)
class _Query:
    """One compiled query of one query set, as filed in the indexes (identity-hashed)."""

    query_set: _QuerySet
    plan: SelectPlan
    key: tuple[int, Any] | None  # (column position, value) it is filed under, or None for the per-table list


@dataclass(eq=False, slots=True)
class _QuerySet:
    client: Client
    query_set_id: int
    queries: tuple[_Query, ...] = ()
    since_offset: int = 0


@dataclass(slots=True)
class _Pending:
    """Rows one query set gains and loses in one table during one transaction (row bytes → row index)."""

    inserts: dict[bytes, int] = field(default_factory=dict)
    deletes: dict[bytes, int] = field(default_factory=dict)


class SubscriptionManager:
    """Every client's query sets, and the indexes that route a changed row to the queries it may match."""

    def __init__(self, datastore: Datastore, current_offset: Callable[[], int]) -> None:
        self._datastore = datastore
        self._current_offset = current_offset
        self._clients: dict[Client, dict[int, _QuerySet]] = {}
        # table → column position → value → queries filed there
        self._by_value: dict[str, dict[int, dict[Any, set[_Query]]]] = {}
        # table → queries without an equality conjunct
        self._by_table: dict[str, set[_Query]] = {}

    # ----- requests -----

    def subscribe(
        self,
        client: Client,
        request_id: int,
        query_set_id: int,
        sqls: Sequence[str],
        *,
        sender: Identity | None = None,
        private_visible: bool = False,
    ) -> SubscribeApplied | SubscriptionError:
        """Register a query set and return its initial rows, or the error that refused it (nothing registered)."""
        sets = self._clients.setdefault(client, {})
        if query_set_id in sets:
            return SubscriptionError(request_id, query_set_id, f"query set {query_set_id} is already subscribed")
        if not sqls:
            return SubscriptionError(request_id, query_set_id, "a query set needs at least one query")
        if len(sqls) > MAX_QUERIES_PER_SET:
            return SubscriptionError(
                request_id, query_set_id, f"too many queries in one query set: {len(sqls)} > {MAX_QUERIES_PER_SET}"
            )
        ctx = SqlContext(self._datastore, private_visible=private_visible, sender=sender)
        plans: list[SelectPlan] = []
        for sql in sqls:
            try:
                plans.append(compile_subscription(sql, ctx))
            except SqlError as exc:
                return SubscriptionError(request_id, query_set_id, f"{exc} (in query {sql!r})")
        query_set = _QuerySet(client, query_set_id, since_offset=self._current_offset())
        query_set.queries = tuple(_Query(query_set, plan, _index_key(plan)) for plan in plans)
        rows = self._current_rows(plans)
        sets[query_set_id] = query_set
        for query in query_set.queries:
            self._file(query)
        return SubscribeApplied(request_id, query_set_id, rows)

    def unsubscribe(
        self, client: Client, request_id: int, query_set_id: int, *, send_dropped_rows: bool = False
    ) -> UnsubscribeApplied | SubscriptionError:
        """End a query set; with `send_dropped_rows`, return the rows it held (the client drops them)."""
        query_set = self._clients.get(client, {}).pop(query_set_id, None)
        if query_set is None:
            return SubscriptionError(request_id, query_set_id, f"query set {query_set_id} is not subscribed")
        for query in query_set.queries:
            self._unfile(query)
        rows = self._current_rows([q.plan for q in query_set.queries]) if send_dropped_rows else None
        return UnsubscribeApplied(request_id, query_set_id, rows)

    def remove_client(self, client: Client) -> None:
        """Forget every query set of a client that went away."""
        for query_set in self._clients.pop(client, {}).values():
            for query in query_set.queries:
                self._unfile(query)

    def query_set_count(self, client: Client) -> int:
        """How many query sets a client holds (for limits and metrics)."""
        return len(self._clients.get(client, {}))

    def _current_rows(self, plans: Iterable[SelectPlan]) -> QueryRows:
        by_table: dict[str, dict[bytes, None]] = {}
        for plan in plans:
            seen = by_table.setdefault(plan.table.name, {})
            if plan.table.event:
                continue  # event tables hold no rows: a subscription starts empty
            for row_bytes, _ in matching_rows(plan, self._datastore[plan.table.name]):
                seen[row_bytes] = None
        return QueryRows(
            tuple(SingleTableRows(name, BsatnRowList.from_rows(list(rows))) for name, rows in by_table.items())
        )

    # ----- indexes -----

    def _file(self, query: _Query) -> None:
        table = query.plan.table.name
        if query.key is None:
            self._by_table.setdefault(table, set()).add(query)
            return
        position, value = query.key
        self._by_value.setdefault(table, {}).setdefault(position, {}).setdefault(value, set()).add(query)

    def _unfile(self, query: _Query) -> None:
        table = query.plan.table.name
        if query.key is None:
            bucket = self._by_table.get(table)
            if bucket is not None:
                bucket.discard(query)
                if not bucket:
                    del self._by_table[table]
            return
        position, value = query.key
        columns = self._by_value.get(table, {})
        values = columns.get(position, {})
        queries = values.get(value)
        if queries is None:
            return
        queries.discard(query)
        if not queries:
            del values[value]
            if not values:
                del columns[position]
                if not columns:
                    del self._by_value[table]

    def _candidates(self, table: str, row: Row) -> Iterable[_Query]:
        yield from self._by_table.get(table, ())
        for position, values in self._by_value.get(table, {}).items():
            try:
                found = values.get(row[position])
            except TypeError:  # an unhashable column value can never equal a filed literal
                continue
            if found:
                yield from found

    # ----- transactions -----

    def on_commit(self, tx: CommittedTx) -> dict[Client, tuple[QuerySetUpdate, ...]]:
        """Each affected client's query-set updates for one transaction (at most one entry per client)."""
        # client → query set → table → pending rows
        touched: dict[Client, dict[int, dict[str, _Pending]]] = {}
        event_tables: set[str] = set()
        offset = tx.offset
        for change in tx.changes:
            table = change.table
            if table not in self._by_table and table not in self._by_value:
                continue
            if self._datastore[table].table.event:
                event_tables.add(table)
            for is_insert, rows in ((True, change.inserts), (False, change.deletes)):
                for index, (row_bytes, row) in enumerate(rows):
                    for query in self._candidates(table, row):
                        query_set = query.query_set
                        if query_set.since_offset >= offset or not query.plan.matches(row):
                            continue
                        pending = (
                            touched.setdefault(query_set.client, {})
                            .setdefault(query_set.query_set_id, {})
                            .setdefault(table, _Pending())
                        )
                        (pending.inserts if is_insert else pending.deletes).setdefault(row_bytes, index)
        if not touched:
            return {}
        packer = _Packer(tx)
        out: dict[Client, tuple[QuerySetUpdate, ...]] = {}
        for client, sets in touched.items():
            updates = []
            for query_set_id, tables in sets.items():
                table_updates = []
                for table, pending in tables.items():
                    if table in event_tables:
                        rows_entry: PersistentTableRows | EventTableRows = EventTableRows(
                            packer.rows(table, True, pending.inserts)
                        )
                    else:
                        rows_entry = PersistentTableRows(
                            packer.rows(table, True, pending.inserts), packer.rows(table, False, pending.deletes)
                        )
                    table_updates.append(TableUpdate(table, (rows_entry,)))
                updates.append(QuerySetUpdate(query_set_id, tuple(table_updates)))
            out[client] = tuple(updates)
        return out


class _Packer:
    """Builds each distinct row list of one transaction once, however many query sets share it."""

    def __init__(self, tx: CommittedTx) -> None:
        self._changes = {change.table: change for change in tx.changes}
        self._cache: dict[tuple[str, bool, tuple[int, ...]], BsatnRowList] = {}

    def rows(self, table: str, inserts: bool, picked: dict[bytes, int]) -> BsatnRowList:
        if not picked:
            return BsatnRowList.empty()
        indices = tuple(sorted(picked.values()))
        key = (table, inserts, indices)
        cached = self._cache.get(key)
        if cached is None:
            change = self._changes[table]
            source = change.inserts if inserts else change.deletes
            cached = BsatnRowList.from_rows([source[i][0] for i in indices])
            self._cache[key] = cached
        return cached


def _index_key(plan: SelectPlan) -> tuple[int, Any] | None:
    """The (column position, value) a query is filed under: its first hashable top-level equality, if any."""
    for term in equality_terms(plan.predicate):
        try:
            hash(term.value)
        except TypeError:
            continue
        return term.position, term.value
    return None
