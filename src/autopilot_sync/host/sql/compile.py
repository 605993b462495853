"""A caller's query compiled: the statement as written (select.py), then restricted to what the caller may see.

Every read but the owner's goes through the module's row-level security (`Module.client_visibility_filter`), ANDed
into the plan here, so subscriptions, one-off queries and `/sql` see the same rows (docs/security.md "Who may read").
"""

from __future__ import annotations

import dataclasses

from autopilot_sync.host.datastore import Datastore
from autopilot_sync.host.sql import views
from autopilot_sync.host.sql.plan import And, Comparison, Or, Predicate, SelectPlan, SqlContext, SqlError
from autopilot_sync.spacetime.values import Identity


def compile_subscription(sql: str, ctx: SqlContext) -> SelectPlan:
    """Compile a subscription query: whole rows of one table, optionally filtered."""
    plan = _compile(sql, ctx, one_off=False)
    return plan


def compile_query(sql: str, ctx: SqlContext) -> SelectPlan:
    """Compile a one-off query (projections, `COUNT(*)` and `LIMIT` allowed)."""
    return _compile(sql, ctx, one_off=True)


#: Compiled queries per (module, text, kind, caller's view): a reconnect storm sends the same resume query from many
#: sockets, and parsing is most of what compiling costs. Plans are frozen, so sockets share them; a hit is used only
#: while its tables are still the datastore's (a publish replaces them). Failures are not remembered.
_PLANS: dict[tuple[object, str, bool, bool, Identity | None], SelectPlan] = {}
_PLANS_MAX = 1024


def _compile(sql: str, ctx: SqlContext, *, one_off: bool) -> SelectPlan:
    key = (ctx.datastore.module, sql, one_off, ctx.private_visible, ctx.sender)
    plan = _PLANS.get(key)
    if plan is not None and _current(plan, ctx.datastore):
        return plan
    from autopilot_sync.host.sql.select import compile_plan  # sqlglot is imported with the first query

    plan = compile_plan(sql, ctx, one_off=one_off)
    if not ctx.private_visible:
        plan = apply_visibility(plan, ctx)
    if len(_PLANS) >= _PLANS_MAX:
        del _PLANS[next(iter(_PLANS))]
    _PLANS[key] = plan
    return plan


def _current(plan: SelectPlan, datastore: Datastore) -> bool:
    """Whether the plan's tables are the ones the datastore holds now."""
    if plan.view is not None:
        return views.is_current(plan, datastore)
    store = datastore.tables.get(plan.table.name)
    if store is None or store.table is not plan.table:
        return False
    if plan.join is None:
        return True
    joined = datastore.tables.get(plan.join.table.name)
    return joined is not None and joined.table is plan.join.table


# ----- row-level security -----

#: Compiled visibility filters per (module, table, filter texts, sender): compiling parses SQL, and a busy reader asks
#: often. A hit is used only while its tables are still the datastore's (a publish replaces them), as for `_PLANS`.
_RULES: dict[tuple[object, str, tuple[str, ...], Identity], SelectPlan] = {}
_RULES_MAX = 4096


def _rule(table: str, ctx: SqlContext) -> SelectPlan | None:
    """The table's visibility filters compiled for `ctx.sender` as one plan (None when the table has none)."""
    module = ctx.datastore.module
    sqls = module.visibility_filters().get(table)
    if not sqls:
        return None
    if ctx.sender is None:
        raise SqlError(f"`{table}` is visible row by row and this read has no caller identity")
    key = (module, table, sqls, ctx.sender)
    plan = _RULES.get(key)
    if plan is None or not _current(plan, ctx.datastore):
        plan = union_of_filters(table, [_filter_plan(table, sql, ctx) for sql in sqls])
        if len(_RULES) >= _RULES_MAX:
            _RULES.clear()
        _RULES[key] = plan
    return plan


def _filter_plan(table: str, sql: str, ctx: SqlContext) -> SelectPlan:
    """One visibility filter compiled for `ctx.sender`; it must select whole rows of `table`."""
    from autopilot_sync.host.sql.select import compile_plan

    plan = compile_plan(sql, SqlContext(ctx.datastore, private_visible=True, sender=ctx.sender), one_off=False)
    if plan.table.name != table or not plan.returns_rows:
        raise SqlError(f"the visibility filter of `{table}` must select rows of `{table}`: {sql}")
    return plan


def union_of_filters(table: str, plans: list[SelectPlan]) -> SelectPlan:
    """Several visibility filters of one table as one plan: a row is visible when any filter admits it.

    SpacetimeDB ORs a table's `client_visibility_filter`s. This host evaluates one plan per read, so the union must be
    one plan: the filters' predicates ORed over the same shape — all single-table, or all the same join (the same
    joined table on the same columns; `exists u: P1 or exists u: P2` is `exists u: P1 or P2`). Filters of different
    shapes are refused with that reason (at module load, as SpacetimeDB checks filters at publish).
    """
    first = plans[0]
    if len(plans) == 1:
        return first
    shape = dataclasses.replace(first, sql="", predicate=None)
    if any(dataclasses.replace(plan, sql="", predicate=None) != shape for plan in plans[1:]):
        raise SqlError(
            f"Unsupported: the visibility filters of `{table}` differ in their joins; this host unions several "
            f"filters of a table only when none joins or all join the same table on the same columns"
        )
    predicates = [plan.predicate for plan in plans]
    union = None if any(p is None for p in predicates) else Or(tuple(p for p in predicates if p is not None))
    return dataclasses.replace(first, sql=" UNION ".join(plan.sql for plan in plans), predicate=union)


class VisibilityFilterError(SqlError):
    """A module's visibility filter does not compile: the host refuses the module at load (SpacetimeDB refuses it at
    publish) rather than failing every later read of the table."""

    def __init__(self, table: str, sql: str, reason: str) -> None:
        super().__init__(f"the visibility filter of `{table}` does not compile: {reason} (filter: {sql})")
        self.table = table
        self.sql = sql


def check_visibility_filters(datastore: Datastore) -> None:
    """Compile every visibility filter of the loaded module once; the engine calls this when it loads a module.

    Raises `VisibilityFilterError` naming the first table whose filter does not compile and why, or whose several
    filters cannot be united.
    """
    probe = SqlContext(datastore, sender=Identity(0))
    for table, sqls in datastore.module.visibility_filters().items():
        for sql in sqls:
            try:
                _filter_plan(table, sql, probe)
            except SqlError as exc:
                raise VisibilityFilterError(table, sql, str(exc)) from exc
        try:
            _rule(table, probe)
        except SqlError as exc:
            raise VisibilityFilterError(table, " UNION ".join(sqls), str(exc)) from exc


def apply_visibility(plan: SelectPlan, ctx: SqlContext) -> SelectPlan:
    """The plan restricted to the rows the module's visibility filters let `ctx.sender` see.

    SpacetimeDB's row-level security, for this host's plan shapes: a query over a filtered table reads only the rows
    the filter selects, so the result is the query ANDed with the filter. A single-table filter adds its predicate; a
    filter with a join (`SELECT t.* FROM t JOIN u ON t.a = u.b WHERE u.c = :sender`) turns a single-table query into
    that join, with both predicates, and the joined table's own single-table filter applies too (SpacetimeDB applies
    filters to the tables a filter joins as well). A query that is itself a join may read filtered tables only when
    their filters have no join (this host evaluates one join per query), else it is refused with that reason.
    """
    if plan.view is not None:
        return plan  # a view decides what it shows (row-level security applies to the tables it reads, not to it)
    rules = {table: _rule(table, ctx) for table in plan.tables()}
    if not any(rules.values()):
        return plan
    width = len(plan.table.columns)
    predicate = plan.predicate
    join = plan.join
    if join is not None:
        for table, offset in ((plan.table.name, 0), (join.table.name, width)):
            rule = rules[table]
            if rule is None:
                continue
            if rule.join is not None:
                raise SqlError(
                    f"Unsupported: a join with `{table}`, whose rows are visible through a join "
                    f"(row-level security); query `{table}` alone"
                )
            predicate = _and(predicate, _shifted(rule.predicate, offset))
        return dataclasses.replace(plan, predicate=predicate)
    rule = rules[plan.table.name]
    assert rule is not None
    predicate = _and(predicate, rule.predicate)
    if rule.join is not None:
        inner = _rule(rule.join.table.name, ctx)
        if inner is not None:
            if inner.join is not None:
                raise SqlError(f"Unsupported: visibility filters nested through two joins (`{rule.join.table.name}`)")
            predicate = _and(predicate, _shifted(inner.predicate, width))
    return dataclasses.replace(plan, predicate=predicate, join=rule.join)


def _and(left: Predicate | None, right: Predicate | None) -> Predicate | None:
    if left is None:
        return right
    if right is None:
        return left
    return And((left, right))


def _shifted(predicate: Predicate | None, offset: int) -> Predicate | None:
    """The predicate with every column position moved by `offset` (a table's filter applied to the joined side)."""
    if predicate is None or offset == 0:
        return predicate
    if isinstance(predicate, Comparison):
        return dataclasses.replace(predicate, position=predicate.position + offset)
    parts = tuple(_shifted(part, offset) for part in predicate.parts)
    return type(predicate)(tuple(p for p in parts if p is not None))
