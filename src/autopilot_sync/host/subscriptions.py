"""The subscription engine: per client, query sets of compiled queries; initial rows, then per-transaction deltas.

Pure and synchronous (no sockets, no clock): the WebSocket layer feeds it requests and committed transactions and
sends what it returns. Everything runs on the event loop between transactions, so `subscribe` reads a consistent
snapshot, and the engine offset it records marks which later transactions the snapshot already contains.

Cost per transaction is proportional to the rows it changed and the queries those rows match, never to the number of
tables' rows or subscribers: identical single-table queries are one *filter*, tested once per row whoever holds them;
a filter with a top-level `column = literal` conjunct is filed under (table, column, value), and each changed row
looks up only its own values; one with a top-level range term (`<`, `<=`, `>`, `>=`) sits in a list per (table,
column, operator) sorted by bound, and a row visits only the bounds it satisfies; the rest sit in a per-table list
that every change to that table visits, which is why a connection may hold only a few of those
(`SubscriptionLimits`, docs/security.md). Row bytes come from the `CommittedTx` (encoded once, by the transaction)
and a row list shared by many clients with the same result is packed once.

Fan-out is shared, not per client: query sets with the same id and the same queries (as compiled: table and
predicate) are one *shape*, and the indexes hold each shape's queries once. A changed row is tested once per shape,
the shape's `QuerySetUpdate` is built once, and every client holding that shape gets the very same update object
(clients with the same touched shapes share the same tuple), so the socket layer can encode it once for all of them.
Per client only a dictionary entry is left. Many clients subscribing with the same query set id and queries (the
common case: one app, one resume query) thus cost one evaluation per transaction, not one per client.

Subscribe and unsubscribe are ordered with commits as on SpacetimeDB (`remove_v2_subscription_inner` computes the
dropped rows under the same lock that orders commits, so every earlier update is already queued ahead of the answer).
Here transactions are applied at once and handed to `on_commit` in commit order some time later (the hub does it
while the commit's fsync runs and sends the result once it is durable: `update_queue.py`), so the datastore may be
ahead of what was evaluated. `subscribe` reads the current state and skips the updates of transactions it already
holds (`since_offset`); `unsubscribe` reads the current state for the dropped rows and keeps the set receiving updates
until the transactions that state includes are delivered (`until_offset`), so the client never drops a row it was
not sent nor misses an update of a set it still holds. The socket layer sends each answer after the updates of the
offset it was computed at.

Within one query set rows have set semantics: a row matched by two queries of the same set appears once, in the
initial rows and in every delta alike, so the client's per-set reference counts stay exact. Rows matching several
query sets appear under each.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sortedcontainers import SortedKeyList

from autopilot_sync.host.datastore import Datastore
from autopilot_sync.host.logtable import RowRun
from autopilot_sync.host.sql import (
    CompareOp,
    Comparison,
    JoinMirror,
    JoinTest,
    SelectPlan,
    SqlContext,
    SqlError,
    compile_subscription,
    conjuncts,
    equality_terms,
    plan_row_bytes,
)
from autopilot_sync.host.sql.joins import Change
from autopilot_sync.host.transaction import CommittedTx, TableChange
from autopilot_sync.host.view_call import ViewCallError
from autopilot_sync.host.view_subscriptions import Answers as ViewAnswers
from autopilot_sync.host.view_subscriptions import ViewRows, view_plans
from autopilot_sync.host.view_subscriptions import all_rows as all_view_rows
from autopilot_sync.host.view_subscriptions import load as load_views
from autopilot_sync.host.view_subscriptions import rebind as rebind_view
from autopilot_sync.host.view_subscriptions import refresh as refresh_views
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

#: Most queries one Subscribe may carry by default (the real host has no documented limit).
MAX_QUERIES_PER_SET = 256


@dataclass(frozen=True, slots=True)
class SubscriptionLimits:
    """How much one connection may hold, so one client cannot make every commit expensive for everyone.

    Only our host enforces these (docs/security.md); the defaults are the host settings' defaults.
    """

    max_query_sets_per_connection: int = 64
    max_queries_per_set: int = MAX_QUERIES_PER_SET
    max_queries_per_connection: int = 1024
    #: queries no index routes (no top-level `column = literal` or range term): every commit to their table tests them
    max_unindexed_queries_per_connection: int = 64


@dataclass(eq=False, slots=True)
class _Query:
    """One compiled query of one shape, as filed in the indexes (identity-hashed)."""

    shape: _Shape
    plan: SelectPlan
    key: tuple[int, Any] | None  # (column position, value) it is filed under, or None for the per-table list
    #: a join query's partner test, made at the first commit that asks it (idle subscriptions never do)
    join_test: JoinTest | None = None


@dataclass(eq=False, slots=True)
class _Filter:
    """One distinct single-table query (plan without its SQL text), shared by every shape holding it.

    A changed row is tested once per filter it may match, however many shapes (query set ids, clients) hold the
    same query; only the shapes of a filter that matched are visited afterwards, so a commit's work follows matches.
    """

    plan: SelectPlan
    key: tuple[int, Any] | None
    #: (column position, operator, bound) of a top-level range term it is filed under when it has no equality term
    range_key: tuple[int, CompareOp, Any] | None
    #: shape → how many of its queries are this filter
    shapes: dict[_Shape, int] = field(default_factory=dict)


@dataclass(eq=False, slots=True)
class _Shape:
    """A query set id with its queries, shared by every client that subscribed exactly that (identity-hashed)."""

    key: Hashable
    query_set_id: int
    queries: tuple[_Query, ...] = ()
    #: the query sets of this shape, in subscription order
    members: dict[_QuerySet, None] = field(default_factory=dict)
    #: the highest `since_offset` a member ever had: a transaction above it goes to every member unchecked
    newest_since: int = 0
    #: one query (the common case): its rows are its filter's, shared as they are
    single: bool = False
    #: the rows it holds of each view it reads, by view name (None: it reads no view; see `view_subscriptions`)
    views: dict[str, ViewRows] | None = None


@dataclass(eq=False, slots=True)
class _QuerySet:
    """One client's query set: which shape it is and the offset its initial rows already include."""

    client: Client
    shape: _Shape
    since_offset: int
    plans: tuple[SelectPlan, ...]  # as this client sent them (dropped rows list tables in its order)
    #: set by `unsubscribe`: the offset its dropped rows were read at; it gets updates up to there, then leaves
    until_offset: int | None = None


@dataclass(slots=True)
class _Pending:
    """Rows one shape gains and loses in one table during one transaction (row bytes → row index)."""

    inserts: dict[bytes, int] = field(default_factory=dict)
    deletes: dict[bytes, int] = field(default_factory=dict)


class _JoinMixin:
    """Join subscriptions (`SELECT t.* FROM t JOIN u ON t.a = u.b`): which rows of `t` enter or leave a shape's view.

    A row of `t` is in a join query's view while it has at least one partner in `u` satisfying the WHERE clause; per
    shape it appears once (set semantics, as every other row here) however many partners it has. The real host sends
    it once per partner and the SDK reference-counts it, so the client's cache and callbacks come out the same.

    Both tables are read through `JoinMirror`s at the transaction's own offset (the datastore may be further ahead):
    memberships are computed before the mirrors take the transaction and after, for the rows that can change: rows of
    `t` the transaction inserted or deleted, and rows of `t` whose join value a changed row of `u` carries.
    """

    _datastore: Datastore
    _current_offset: Callable[[], int]
    _joins: dict[str, set[_Query]]
    _mirrors: dict[tuple[str, int], tuple[JoinMirror, int]]

    _delivering: CommittedTx | None
    _undelivered: Callable[[int], Iterable[CommittedTx]] | None

    def _mirror(self, table: str, position: int) -> JoinMirror:
        return self._mirrors[(table, position)][0]

    def _changes_after(self, table: str, offset: int) -> list[Change]:
        """`table`'s changes by the transactions applied after `offset` (oldest first): the one being delivered, if
        it is later, then those applied but not yet durable. What a log table's mirror undoes (`JoinMirror`)."""
        txs: list[CommittedTx] = []
        if self._delivering is not None and self._delivering.offset > offset:
            txs.append(self._delivering)
        if self._undelivered is not None:
            txs.extend(self._undelivered(offset))
        return [(c.inserts, c.deletes) for tx in txs for c in tx.changes if c.table == table]

    def _file_join(self, query: _Query) -> None:
        spec = query.plan.join
        assert spec is not None
        for table, position in ((query.plan.table.name, spec.left_position), (spec.table.name, spec.right_position)):
            self._joins.setdefault(table, set()).add(query)
            entry = self._mirrors.get((table, position))
            if entry is None:
                store = self._datastore[table]
                entry = (JoinMirror(store, position, self._current_offset(), self._changes_after), 0)
            self._mirrors[(table, position)] = (entry[0], entry[1] + 1)

    def _unfile_join(self, query: _Query) -> None:
        spec = query.plan.join
        assert spec is not None
        for table, position in ((query.plan.table.name, spec.left_position), (spec.table.name, spec.right_position)):
            bucket = self._joins.get(table)
            if bucket is not None:
                bucket.discard(query)
                if not bucket:
                    del self._joins[table]
            entry = self._mirrors.get((table, position))
            if entry is not None:
                if entry[1] <= 1:
                    del self._mirrors[(table, position)]
                else:
                    self._mirrors[(table, position)] = (entry[0], entry[1] - 1)

    @staticmethod
    def _join_test(query: _Query) -> JoinTest:
        test = query.join_test
        if test is None:
            test = query.join_test = JoinTest(query.plan, _left_equality(query.plan))
        return test

    def _join_deltas(self, tx: CommittedTx) -> dict[_Shape, dict[str, tuple[dict[bytes, Row], dict[bytes, Row]]]]:
        """Per shape and projected table: rows entering (inserts) and leaving (deletes) the shape's view."""
        changes = {change.table: change for change in tx.changes}
        offset = tx.offset
        queries = {query for table in changes for query in self._joins.get(table, ())}
        # changed values per (table, column), for skipping queries the transaction cannot touch
        changed_values: dict[tuple[str, int], set[Any]] = {}
        # before the mirrors take the transaction: which candidate rows had a partner
        work = []
        direct: list[tuple[_Shape, str, dict[bytes, Row], dict[bytes, Row]]] = []
        for query in queries:
            plan = query.plan
            spec = plan.join
            assert spec is not None
            test = self._join_test(query)
            fixed = test.fixed
            if fixed is not None and spec.table.name not in changes:
                # only the projected table changed, and the query keeps one value of one of its columns (a stream's
                # events seen through a row-level security join): rows with other values cannot enter or leave
                position, value = fixed
                seen = changed_values.get((plan.table.name, position))
                if seen is None:
                    own_change = changes[plan.table.name]
                    seen = {_hashable(row[position]) for _, row in (*own_change.inserts, *own_change.deletes)}
                    changed_values[(plan.table.name, position)] = seen
                if value not in seen:
                    continue
            projected = None if plan.table.event else self._mirror(plan.table.name, spec.left_position)
            joined = self._mirror(spec.table.name, spec.right_position)
            if joined.offset >= offset or (projected is not None and projected.offset >= offset):
                continue  # the shape was subscribed after this transaction
            own, other = changes.get(plan.table.name), changes.get(spec.table.name)
            if other is None and own is not None and query.shape.single:
                # only the projected table changed: every row has the same partners before and after, so a row
                # enters when inserted with a partner and leaves when deleted with one (unless both: it stays);
                # no other query of the shape can hold it
                gone = {b for b, _ in own.deletes}
                came = {b for b, _ in own.inserts}
                entering = {b: r for b, r in own.inserts if b not in gone and test.has_partner(r, joined)}
                leaving = {b: r for b, r in own.deletes if b not in came and test.has_partner(r, joined)}
                if entering or leaving:
                    direct.append((query.shape, plan.table.name, entering, leaving))
                continue
            inserted = dict(own.inserts) if own else {}
            deleted = dict(own.deletes) if own else {}
            stable: dict[bytes, Row] = {}
            if other is not None and projected is not None:
                for _, row in (*other.inserts, *other.deletes):
                    for row_bytes, candidate in projected.get(row[spec.right_position]).items():
                        if row_bytes not in deleted:
                            stable[row_bytes] = candidate
            old = {b: test.has_partner(r, joined) for b, r in (*deleted.items(), *stable.items())}
            work.append((query, test, joined, inserted, deleted, stable, old))
        for (table, _), (mirror, _) in self._mirrors.items():
            change = changes.get(table)
            if change is not None and not self._datastore[table].table.event:
                mirror.apply(offset, change.inserts, change.deletes)
        # after: which have one now; then per shape, against the shape's other queries
        # (shape, table) → row bytes → [row, was in the view, is in the view, how the tx touched it, queries asked]
        verdicts: dict[tuple[_Shape, str], dict[bytes, list[Any]]] = {}
        for query, test, joined, inserted, deleted, stable, old in work:
            plan = query.plan
            found = verdicts.setdefault((query.shape, plan.table.name), {})
            for row_bytes, row in deleted.items():
                entry = found.setdefault(row_bytes, [row, False, False, "deleted", set()])
                entry[1] = entry[1] or old[row_bytes]
            for row_bytes, row in (*inserted.items(), *stable.items()):
                how = "inserted" if row_bytes in inserted else "stable"
                entry = found.setdefault(row_bytes, [row, False, False, how, set()])
                entry[1] = entry[1] or old.get(row_bytes, False)
                entry[2] = entry[2] or test.has_partner(row, joined)
                entry[4].add(query)
        out: dict[_Shape, dict[str, tuple[dict[bytes, Row], dict[bytes, Row]]]] = {}
        for shape, table, entering, leaving in direct:
            out.setdefault(shape, {})[table] = (entering, leaving)
        for (shape, table), found in verdicts.items():
            inserts: dict[bytes, Row] = {}
            deletes: dict[bytes, Row] = {}
            for row_bytes, (row, was, now, how, asked) in found.items():
                if was == now:
                    continue
                if how == "stable" and self._held_elsewhere(shape, table, row, asked):
                    continue  # another query of the shape holds the row before and after
                (inserts if now else deletes)[row_bytes] = row
            if inserts or deletes:
                out.setdefault(shape, {})[table] = (inserts, deletes)
        return out

    def _held_elsewhere(self, shape: _Shape, table: str, row: Row, asked: set[_Query]) -> bool:
        for query in shape.queries:
            plan = query.plan
            if plan.table.name != table or query in asked:
                continue
            if plan.join is None:
                if plan.matches(row):
                    return True
            elif self._join_test(query).has_partner(row, self._mirror(plan.join.table.name, plan.join.right_position)):
                return True
        return False

    def _merge_join_rows(
        self,
        tx: CommittedTx,
        join_rows: dict[_Shape, dict[str, tuple[dict[bytes, Row], dict[bytes, Row]]]],
        touched: dict[_Shape, dict[str, _Pending]],
        event_tables: set[str],
    ) -> CommittedTx:
        """File the join rows as pending rows. Rows the transaction did not change are appended to its change lists
        (the packer reads rows by index), so the returned transaction is the one to pack from."""
        changes = {change.table: change for change in tx.changes}
        positions: dict[tuple[str, bool], dict[bytes, int]] = {}
        extra: dict[tuple[str, bool], list[tuple[bytes, Row]]] = {}
        for shape, tables in join_rows.items():
            for table, (inserts, deletes) in tables.items():
                if self._datastore[table].table.event:
                    event_tables.add(table)
                pending = touched.setdefault(shape, {}).setdefault(table, _Pending())
                for is_insert, rows in ((True, inserts), (False, deletes)):
                    key = (table, is_insert)
                    where = positions.get(key)
                    if where is None:
                        change = changes.get(table)
                        source = (change.inserts if is_insert else change.deletes) if change else ()
                        where = positions[key] = {b: i for i, (b, _) in enumerate(source)}
                    for row_bytes, row in rows.items():
                        index = where.get(row_bytes)
                        if index is None:
                            index = where[row_bytes] = len(where)
                            extra.setdefault(key, []).append((row_bytes, row))
                        (pending.inserts if is_insert else pending.deletes).setdefault(row_bytes, index)
        if not extra:
            return tx
        extended = {table for table, _ in extra}
        new_changes = [
            dataclasses.replace(
                change,
                inserts=change.inserts + tuple(extra.get((change.table, True), ())),
                deletes=change.deletes + tuple(extra.get((change.table, False), ())),
            )
            if change.table in extended
            else change
            for change in tx.changes
        ]
        for table in sorted(extended - set(changes)):
            new_changes.append(
                TableChange(table, tuple(extra.get((table, True), ())), tuple(extra.get((table, False), ())))
            )
        return dataclasses.replace(tx, changes=tuple(new_changes))


class SubscriptionManager(_JoinMixin):
    """Every client's query sets, their shapes, and the indexes that route a changed row to the queries it may match."""

    def __init__(
        self,
        datastore: Datastore,
        current_offset: Callable[[], int],
        delivered_offset: Callable[[], int] | None = None,
        limits: SubscriptionLimits | None = None,
        undelivered: Callable[[int], Iterable[CommittedTx]] | None = None,
    ) -> None:
        """`current_offset`: the datastore's state; `delivered_offset`: the newest transaction given to `on_commit`
        (the hub's `UpdateQueue.evaluated_offset`; by default the current one, for callers that deliver each commit at
        once); `undelivered`: the transactions applied after an offset but not yet given to `on_commit` (the hub's
        `UpdateQueue.unevaluated_after`; by default none). Subscribed views need `on_apply` to hear of each
        transaction as it is applied (`add_apply_listener`)."""
        self._datastore = datastore
        self._undelivered = undelivered
        self._delivering = None
        self._current_offset = current_offset
        self._delivered_offset = delivered_offset or current_offset
        self.limits = limits or SubscriptionLimits()
        self._clients: dict[Client, dict[int, _QuerySet]] = {}
        self._query_counts: dict[Client, int] = {}
        self._unindexed_counts: dict[Client, int] = {}
        # unsubscribed query sets still owed the updates up to their `until_offset`, in that order
        self._leaving: list[_QuerySet] = []
        self._shapes: dict[Hashable, _Shape] = {}
        # shape keys by (query set id, the plan objects' ids), each kept with its plans so no id is reused meanwhile
        self._shape_keys: dict[tuple[int, tuple[int, ...]], tuple[tuple[SelectPlan, ...], Hashable]] = {}
        # distinct single-table queries by (table, plan without SQL text)
        self._filters: dict[Hashable, _Filter] = {}
        # table → column position → value → filters filed there
        self._by_value: dict[str, dict[int, dict[Any, set[_Filter]]]] = {}
        # table → (column position, operator) → filters filed under a range term, sorted by bound
        self._by_range: dict[str, dict[tuple[int, CompareOp], SortedKeyList[_Filter, Any]]] = {}
        # table → filters without an equality or range conjunct
        self._by_table: dict[str, set[_Filter]] = {}
        # join queries, filed under both their tables, and the (table, column) mirrors they read (with use counts)
        self._joins: dict[str, set[_Query]] = {}
        self._mirrors: dict[tuple[str, int], tuple[JoinMirror, int]] = {}
        # shapes that read a view: each commit may call their views again
        self._view_shapes: dict[_Shape, None] = {}
        # the views' differences computed at apply (`on_apply`), by offset, until that commit's delivery
        self._view_pending: dict[int, dict[_Shape, tuple[TableUpdate, ...]]] = {}

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
        """Register a query set and return its initial rows, or the error that refused it (nothing registered).

        A set of zero queries is registered and applied with no rows, as SpacetimeDB does (its `subscribe_v2` in
        `crates/core/src/subscription/module_subscription_actor.rs` compiles and adds an empty batch).
        """
        sets = self._clients.setdefault(client, {})
        if query_set_id in sets:
            return SubscriptionError(request_id, query_set_id, f"query set {query_set_id} is already subscribed")
        refused = self._over_limits(client, len(sqls))
        if refused is not None:
            return SubscriptionError(request_id, query_set_id, refused)
        ctx = SqlContext(self._datastore, private_visible=private_visible, sender=sender)
        plans: list[SelectPlan] = []
        for sql in sqls:
            try:
                plans.append(compile_subscription(sql, ctx))
            except SqlError as exc:
                # crates/engine/src/error.rs `DBError::WithSql`, with the SQL trimmed as `compile_queries` does.
                return SubscriptionError(request_id, query_set_id, f"{exc}, executing: `{sql.strip()}`")
        unindexed = sum(1 for plan in plans if _unindexed(plan))
        held = self._unindexed_counts.get(client, 0)
        if unindexed and held + unindexed > self.limits.max_unindexed_queries_per_connection:
            return SubscriptionError(request_id, query_set_id, _unindexed_refusal(plans, held + unindexed, self.limits))
        by_view = view_plans(plans)
        view_state = None
        if by_view:
            existing = self._shapes.get(self._remembered_shape_key(query_set_id, plans))
            view_state = existing.views if existing is not None else None
            if view_state is None:
                try:
                    view_state = load_views(by_view, self._datastore, {})
                except ViewCallError as exc:
                    return SubscriptionError(request_id, query_set_id, str(exc))
        rows = self._current_rows(plans)
        since = self._current_offset()
        shape = self._shape(query_set_id, plans)
        if view_state is not None:
            if shape.views is None:
                shape.views = view_state
                self._view_shapes[shape] = None
            rows = QueryRows(rows.tables + all_view_rows([shape.views]))
        query_set = _QuerySet(client, shape, since, tuple(plans))
        shape.members[query_set] = None
        shape.newest_since = max(shape.newest_since, since)
        sets[query_set_id] = query_set
        self._query_counts[client] = self._query_counts.get(client, 0) + len(plans)
        if unindexed:
            self._unindexed_counts[client] = held + unindexed
        return SubscribeApplied(request_id, query_set_id, rows)

    def is_subscribed(self, client: Client, query_set_id: int) -> bool:
        """Whether `client` holds query set `query_set_id` (a second Subscribe with it is a protocol error)."""
        return query_set_id in self._clients.get(client, {})

    def _over_limits(self, client: Client, queries: int) -> str | None:
        """Why a Subscribe of `queries` queries would pass one of the client's limits (None: it fits)."""
        limits = self.limits
        if queries > limits.max_queries_per_set:
            return f"too many queries in one query set: {queries} > {limits.max_queries_per_set}"
        held = len(self._clients.get(client, ()))
        if held >= limits.max_query_sets_per_connection:
            return (
                f"too many query sets on this connection: {held} held, at most "
                f"{limits.max_query_sets_per_connection}; unsubscribe one first"
            )
        total = self._query_counts.get(client, 0) + queries
        if total > limits.max_queries_per_connection:
            return (
                f"too many queries on this connection: {total} > {limits.max_queries_per_connection}; "
                "unsubscribe some first"
            )
        return None

    def unsubscribe(
        self, client: Client, request_id: int, query_set_id: int, *, send_dropped_rows: bool = False
    ) -> UnsubscribeApplied | SubscriptionError:
        """End a query set; with `send_dropped_rows`, return the rows it held (the client drops them).

        The dropped rows are read at the current offset; transactions up to there that are not delivered yet still
        reach the set (their updates go out before this answer), so the client has been sent exactly these rows.
        The id is free for a new subscription at once.
        """
        query_set = self._clients.get(client, {}).pop(query_set_id, None)
        if query_set is None:
            return SubscriptionError(request_id, query_set_id, f"query set {query_set_id} is not subscribed")
        rows = self._current_rows(query_set.plans) if send_dropped_rows else None
        if rows is not None and query_set.shape.views is not None:
            rows = QueryRows(rows.tables + all_view_rows([query_set.shape.views]))
        self._end(query_set)
        return UnsubscribeApplied(request_id, query_set_id, rows)

    def _end(self, query_set: _QuerySet) -> None:
        """Release a query set already taken from its client's sets: it leaves once the current offset is delivered."""
        client = query_set.client
        self._query_counts[client] -= len(query_set.plans)
        unindexed = sum(1 for plan in query_set.plans if _unindexed(plan))
        if unindexed:
            self._unindexed_counts[client] -= unindexed
        until = self._current_offset()
        if until <= self._delivered_offset():
            self._leave(query_set)
        else:
            query_set.until_offset = until
            self._leaving.append(query_set)

    def on_module_replaced(self) -> list[tuple[Client, SubscriptionError]]:
        """A publish replaced the module and kept its tables, so live query sets stay: rebind their views.

        Each subscribed view is bound to the new module's view of the same name and called again (with the new
        module) at the next commit, whatever that commit touched; its difference goes out with that commit. A view
        the new module no longer serves alike (gone, another row type, visibility or kind) ends every query set that
        reads it: they are released as by an unsubscribe, and each gets a `SubscriptionError` (request id None) the
        caller sends after the updates up to the current offset (`current_offset`).
        """
        ended: list[tuple[Client, SubscriptionError]] = []
        for shape in list(self._view_shapes):
            assert shape.views is not None
            gone = [name for name, held in shape.views.items() if not rebind_view(held, self._datastore)]
            if not gone:
                continue
            # a new Subscribe with the same queries must not join this shape: it gets a key of its own
            del self._view_shapes[shape]
            if self._shapes.get(shape.key) is shape:
                del self._shapes[shape.key]
                shape.key = object()
                self._shapes[shape.key] = shape
            text = f"view {gone[0]} is not served alike by the module just published; subscribe again"
            for query_set in list(shape.members):
                if query_set.until_offset is not None:
                    continue  # already unsubscribed
                self._clients.get(query_set.client, {}).pop(shape.query_set_id, None)
                self._end(query_set)
                ended.append((query_set.client, SubscriptionError(None, shape.query_set_id, text)))
        return ended

    def remove_client(self, client: Client) -> None:
        """Forget every query set of a client that went away (those still leaving too)."""
        self._query_counts.pop(client, None)
        self._unindexed_counts.pop(client, None)
        for query_set in self._clients.pop(client, {}).values():
            self._leave(query_set)
        if any(query_set.client == client for query_set in self._leaving):
            for query_set in [q for q in self._leaving if q.client == client]:
                self._leaving.remove(query_set)
                self._leave(query_set)

    def _retire(self, delivered: int) -> None:
        """Let unsubscribed query sets go once every transaction their dropped rows include was delivered."""
        while self._leaving and (self._leaving[0].until_offset or 0) <= delivered:
            self._leave(self._leaving.pop(0))

    def query_set_count(self, client: Client) -> int:
        """How many query sets a client holds (for limits and metrics)."""
        return len(self._clients.get(client, {}))

    def shape_count(self) -> int:
        """How many distinct query sets (id + queries) are live: what one transaction is evaluated against."""
        return len(self._shapes)

    def _current_rows(self, plans: Iterable[SelectPlan]) -> QueryRows:
        by_table: dict[str, list[list[bytes] | RowRun]] = {}
        for plan in plans:
            if plan.view is not None:
                continue  # a view's rows are the shape's (`view_subscriptions`)
            found = by_table.setdefault(plan.table.name, [])
            if plan.table.event:
                continue  # event tables hold no rows: a subscription starts empty
            found.append(plan_row_bytes(plan, self._datastore))
        return QueryRows(tuple(SingleTableRows(name, _row_list(found)) for name, found in by_table.items()))

    # ----- shapes -----

    def _shape(self, query_set_id: int, plans: Sequence[SelectPlan]) -> _Shape:
        """The live shape for this query set id and these plans, created (and its queries filed) when new."""
        key = self._remembered_shape_key(query_set_id, plans)
        shape = self._shapes.get(key)
        if shape is None:
            shape = _Shape(key, query_set_id)
            shape.queries = tuple(_Query(shape, plan, _index_key(plan)) for plan in plans)
            shape.single = len(shape.queries) == 1
            self._shapes[key] = shape
            for query in shape.queries:
                self._file(query)
        return shape

    def _remembered_shape_key(self, query_set_id: int, plans: Sequence[SelectPlan]) -> Hashable:
        """`_shape_key` of these plan objects, remembered: the compiled-plan cache hands every socket sending the same
        query the same (frozen) plan, and copying and hashing a plan (its table definition, predicate and join, field
        by field) was a quarter of a resume subscription's host CPU in a reconnect storm (docs/performance.md
        "Round 5 — storm2"). At most `_SHAPE_KEYS_MAX` entries, oldest dropped first; a set with an unhashable plan
        (a shape of its own each time) is not remembered."""
        memo = (query_set_id, tuple(id(plan) for plan in plans))
        found = self._shape_keys.get(memo)
        if found is not None:
            return found[1]
        key = _shape_key(query_set_id, plans)
        if not isinstance(key, tuple):
            return key
        if len(self._shape_keys) >= _SHAPE_KEYS_MAX:
            del self._shape_keys[next(iter(self._shape_keys))]
        self._shape_keys[memo] = (tuple(plans), key)
        return key

    def _leave(self, query_set: _QuerySet) -> None:
        """Drop a query set from its shape; the last one out unfiles the shape's queries."""
        shape = query_set.shape
        shape.members.pop(query_set, None)
        if not shape.members and self._shapes.get(shape.key) is shape:
            del self._shapes[shape.key]
            self._view_shapes.pop(shape, None)
            for query in shape.queries:
                self._unfile(query)

    # ----- indexes -----

    def _file(self, query: _Query) -> None:
        if query.plan.view is not None:
            return  # not routed by rows: the shape calls the view after each commit
        if query.plan.join is not None:
            self._file_join(query)
            return
        key = _filter_key(query.plan)
        found = self._filters.get(key)
        if found is None:
            found = self._filters[key] = _Filter(query.plan, query.key, _range_key(query.plan))
            table = query.plan.table.name
            if found.key is None and found.range_key is not None:
                position, op, _ = found.range_key
                bucket = self._by_range.setdefault(table, {}).get((position, op))
                if bucket is None:
                    bucket = self._by_range[table][(position, op)] = SortedKeyList(key=_range_bound)
                bucket.add(found)
            elif found.key is None:
                self._by_table.setdefault(table, set()).add(found)
            else:
                position, value = found.key
                self._by_value.setdefault(table, {}).setdefault(position, {}).setdefault(value, set()).add(found)
        found.shapes[query.shape] = found.shapes.get(query.shape, 0) + 1

    def _unfile(self, query: _Query) -> None:
        if query.plan.view is not None:
            return
        if query.plan.join is not None:
            self._unfile_join(query)
            return
        key = _filter_key(query.plan)
        found = self._filters.get(key)
        if found is None:
            return
        count = found.shapes.get(query.shape, 0)
        if count > 1:
            found.shapes[query.shape] = count - 1
            return
        found.shapes.pop(query.shape, None)
        if found.shapes:
            return
        del self._filters[key]
        table = query.plan.table.name
        if found.key is None and found.range_key is not None:
            position, op, _ = found.range_key
            ranges = self._by_range[table]
            ranges[(position, op)].remove(found)
            if not ranges[(position, op)]:
                del ranges[(position, op)]
                if not ranges:
                    del self._by_range[table]
            return
        if found.key is None:
            bucket = self._by_table.get(table)
            if bucket is not None:
                bucket.discard(found)
                if not bucket:
                    del self._by_table[table]
            return
        position, value = found.key
        columns = self._by_value.get(table, {})
        values = columns.get(position, {})
        filters = values.get(value)
        if filters is None:
            return
        filters.discard(found)
        if not filters:
            del values[value]
            if not values:
                del columns[position]
                if not columns:
                    del self._by_value[table]

    def _candidates(self, table: str, row: Row) -> Iterable[_Filter]:
        yield from self._by_table.get(table, ())
        for (position, op), bucket in self._by_range.get(table, {}).items():
            value = row[position]
            try:
                if op is CompareOp.GT:  # bound < value
                    yield from bucket.irange_key(max_key=value, inclusive=(True, False))
                elif op is CompareOp.GE:
                    yield from bucket.irange_key(max_key=value)
                elif op is CompareOp.LT:  # bound > value
                    yield from bucket.irange_key(min_key=value, inclusive=(False, True))
                else:
                    yield from bucket.irange_key(min_key=value)
            except TypeError:  # a value that does not order against the bounds (e.g. a null option) matches none
                continue
        for position, values in self._by_value.get(table, {}).items():
            try:
                found = values.get(row[position])
            except TypeError:  # an unhashable column value can never equal a filed literal
                continue
            if found:
                yield from found

    # ----- transactions -----

    def on_apply(self, txs: Sequence[CommittedTx]) -> None:
        """The engine's apply listener: the subscribed views' differences for transactions just applied.

        Called before any later transaction runs, so each view reads the state of exactly these transactions; the
        differences wait (by the last one's offset) for that commit's delivery to `on_commit`, so no view update
        reveals a commit that is not durable. A procedure's several commits come together (its views are called once,
        after it returned) and their differences go with its last commit. Nothing is done without view subscriptions.
        """
        if not self._view_shapes:
            return
        changed = {change.table for tx in txs for change in tx.changes}
        found = self._view_updates(changed)
        if found:
            self._view_pending[txs[-1].offset] = found

    def on_commit(self, tx: CommittedTx) -> dict[Client, tuple[QuerySetUpdate, ...]]:
        """Each affected client's query-set updates for one transaction (at most one entry per client).

        Clients whose updates are equal get the same tuple object (built once per shape, or once per distinct
        combination of shapes), so a caller can encode each distinct update once, keyed by identity.
        """
        self._delivering = tx
        try:
            if self._leaving:
                self._retire(tx.offset - 1)
                try:
                    return self._updates(tx)
                finally:
                    self._retire(tx.offset)
            return self._updates(tx)
        finally:
            self._delivering = None

    def _updates(self, tx: CommittedTx) -> dict[Client, tuple[QuerySetUpdate, ...]]:
        # filter → table → pending rows (one evaluation per distinct query, however many sets and clients hold it)
        matched: dict[_Filter, dict[str, _Pending]] = {}
        event_tables: set[str] = set()
        offset = tx.offset
        join_rows = self._join_deltas(tx) if self._joins else {}
        for change in tx.changes:
            table = change.table
            if table not in self._by_table and table not in self._by_value and table not in self._by_range:
                continue
            if self._datastore[table].table.event:
                event_tables.add(table)
            for is_insert, rows in ((True, change.inserts), (False, change.deletes)):
                for index, (row_bytes, row) in enumerate(rows):
                    for candidate in self._candidates(table, row):
                        if not candidate.plan.matches(row):
                            continue
                        pending = matched.setdefault(candidate, {}).setdefault(table, _Pending())
                        (pending.inserts if is_insert else pending.deletes).setdefault(row_bytes, index)
        # shape → table → pending rows: a shape of one query shares its filter's rows (the same dict, so the same
        # table updates below); a shape of several merges its queries' rows (set semantics)
        touched: dict[_Shape, dict[str, _Pending]] = {}
        for candidate, candidate_tables in matched.items():
            for shape in candidate.shapes:
                if shape.single:
                    touched[shape] = candidate_tables
                    continue
                mine = touched.setdefault(shape, {})
                for table, pending in candidate_tables.items():
                    into = mine.setdefault(table, _Pending())
                    into.inserts.update(pending.inserts)
                    into.deletes.update(pending.deletes)
        if join_rows:
            tx = self._merge_join_rows(tx, join_rows, touched, event_tables)
        view_updates = self._view_pending.pop(offset, None) if self._view_pending else None
        if not touched and not view_updates:
            return {}
        packer = _Packer(tx)
        # per client, its updates in shape order; shapes with equal rows share one tuple of table updates. A client
        # whose only update is one shape's holds that shape's one tuple (`alone`), shared with every such member:
        # the common case (one query set matching per subscriber) then costs no list, key or tuple per client.
        per_client: dict[Client, tuple[QuerySetUpdate, ...] | list[QuerySetUpdate]] = {}
        tables_cache: dict[int, tuple[TableUpdate, ...]] = {}  # by identity of the pending dict (alive in touched)
        for shape, tables in touched.items():
            if view_updates and shape in view_updates:
                continue  # below, with its views' differences
            table_updates = tables_cache.get(id(tables))
            if table_updates is None:
                table_updates = tables_cache[id(tables)] = self._table_updates(packer, tables, event_tables)
            update = QuerySetUpdate(shape.query_set_id, table_updates)
            alone = (update,)
            check_since = shape.newest_since >= offset
            for query_set in shape.members:
                if check_since and query_set.since_offset >= offset:
                    continue  # subscribed after this transaction: its initial rows already hold it
                client = query_set.client
                held = per_client.get(client)
                if held is None:
                    per_client[client] = alone
                elif isinstance(held, tuple):
                    per_client[client] = [*held, update]
                else:
                    held.append(update)
        for shape, of_views in (view_updates or {}).items():
            changed = touched.get(shape)
            of_tables = () if changed is None else self._table_updates(packer, changed, event_tables)
            update = QuerySetUpdate(shape.query_set_id, of_tables + of_views)
            # computed when this transaction was applied: a member subscribed since holds it in its initial rows
            check_since = shape.newest_since >= offset
            for query_set in shape.members:
                if check_since and query_set.since_offset >= offset:
                    continue
                held = per_client.get(query_set.client)
                if held is None:
                    per_client[query_set.client] = [update]
                elif isinstance(held, tuple):
                    per_client[query_set.client] = [*held, update]
                else:
                    held.append(update)
        # Clients whose updates are the very same objects get the very same tuple (one encoding for all of them).
        shared: dict[tuple[int, ...], tuple[QuerySetUpdate, ...]] = {}
        out: dict[Client, tuple[QuerySetUpdate, ...]] = {}
        for client, updates in per_client.items():
            if isinstance(updates, tuple):
                out[client] = updates
                continue
            key = tuple(map(id, updates))
            found = shared.get(key)
            if found is None:
                found = shared[key] = tuple(updates)
            out[client] = found
        return out

    def _view_updates(self, changed: set[str]) -> dict[_Shape, tuple[TableUpdate, ...]]:
        """Each view-reading shape's differences after transactions touching `changed` (each view called once)."""
        answers: ViewAnswers = {}
        out: dict[_Shape, tuple[TableUpdate, ...]] = {}
        for shape in self._view_shapes:
            assert shape.views is not None
            found = refresh_views(shape.views, changed, self._datastore, answers)
            if found:
                out[shape] = found
        return out

    @staticmethod
    def _table_updates(packer: _Packer, tables: dict[str, _Pending], event_tables: set[str]) -> tuple[TableUpdate, ...]:
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
        return tuple(table_updates)


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


#: Shape keys `SubscriptionManager._remembered_shape_key` remembers (each holds its plans alive).
_SHAPE_KEYS_MAX = 1024


def _shape_key(query_set_id: int, plans: Sequence[SelectPlan]) -> Hashable:
    """What makes two query sets the same shape: the id and the set of their compiled plans.

    Every field of a plan counts but the SQL text (aliases and spacing do not change the rows); duplicates within a
    set do not count either (rows have set semantics per query set). A plan with an unhashable literal makes the set
    a shape of its own.
    """
    try:
        return query_set_id, frozenset(dataclasses.replace(plan, sql="") for plan in plans)
    except TypeError:
        return object()


def _filter_key(plan: SelectPlan) -> Hashable:
    """What makes two single-table queries one filter: the table and the plan without its SQL text."""
    try:
        key: Hashable = (plan.table.name, dataclasses.replace(plan, sql=""))
        hash(key)
    except TypeError:
        return ("unhashable", id(plan))  # a filter of its own, found again through the same plan object
    return key


def _unindexed(plan: SelectPlan) -> bool:
    """Whether no index routes rows to this query (so every change to its table must test it). A query over a view
    counts too: a commit touching what the view read calls the view again, whatever the WHERE."""
    if plan.view is not None:
        return True
    return plan.join is None and _index_key(plan) is None and _range_key(plan) is None


def _unindexed_refusal(plans: list[SelectPlan], count: int, limits: SubscriptionLimits) -> str:
    """Why a subscription went past `max_unindexed_queries_per_connection`, in terms of what was asked: a query over
    a view has no WHERE term that could make it cheaper, so its refusal says to subscribe to fewer views."""
    limit = limits.max_unindexed_queries_per_connection
    if any(plan.view is not None for plan in plans):
        return (
            f"too many queries over views or without an indexable term on this connection: {count} > {limit}; "
            "a query over a view is checked on every commit touching what the view read: subscribe to fewer views"
        )
    return (
        f"too many queries without an indexable term on this connection: {count} > {limit}; "
        "filter on a column with = or a range"
    )


_RANGE_OPS = (CompareOp.GT, CompareOp.GE, CompareOp.LT, CompareOp.LE)


def _range_key(plan: SelectPlan) -> tuple[int, CompareOp, Any] | None:
    """The first top-level range term (`column < literal` and kin) with a bound that orders, if any."""
    for term in conjuncts(plan.predicate):
        if isinstance(term, Comparison) and term.op in _RANGE_OPS:
            value = term.value
            try:
                if value != value or not (value <= value):  # NaN, or a value that does not order
                    continue
            except TypeError:
                continue
            return term.position, term.op, value
    return None


def _range_bound(found: _Filter) -> Any:
    assert found.range_key is not None
    return found.range_key[2]


def _left_equality(plan: SelectPlan) -> tuple[int, Any] | None:
    """A join query's top-level `column = literal` on its projected table, if any (hashable values only)."""
    width = len(plan.table.columns)
    for term in equality_terms(plan.predicate):
        if term.position < width:
            try:
                hash(term.value)
            except TypeError:
                continue
            return term.position, term.value
    return None


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _index_key(plan: SelectPlan) -> tuple[int, Any] | None:
    """The (column position, value) a query is filed under: its first hashable top-level equality, if any."""
    for term in equality_terms(plan.predicate):
        try:
            hash(term.value)
        except TypeError:
            continue
        return term.position, term.value
    return None


def _row_list(found: list[list[bytes] | RowRun]) -> BsatnRowList:
    """One table's initial rows, each row once: a single log partition's run (a resume) is packed as it is, with no
    object per row (its rows are distinct); anything else is deduplicated in order, then packed."""
    if len(found) == 1 and isinstance(found[0], RowRun):
        return found[0].row_list()
    seen: dict[bytes, None] = {}
    for rows in found:
        seen.update(dict.fromkeys(rows))
    return BsatnRowList.from_rows(list(seen))
