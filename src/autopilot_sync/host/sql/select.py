"""A parsed SELECT to a typed plan: tables, projections, predicates, LIMIT and the one join, checked as compiled.

Subscriptions (`SELECT * FROM t [WHERE pred]`) must return whole rows of one table, because the client caches rows by
table; one-off queries may also project columns, count rows (`COUNT(*) AS n`) and `LIMIT`. Predicates compare a
column with a literal (`= != <> < > <= >=`) joined by `AND`/`OR`. Joins: `SELECT t.* FROM t JOIN u ON t.a = u.b
[WHERE ...]` (one inner equi-join, names qualified); the WHERE clause is compiled over the pair `t_row + u_row`
(positions of `u`'s columns are offset by the width of `t`). Subscriptions follow the real host's planner rule: the
lookup side of the join needs an index whose last column is its join column (`_check_join_index`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from autopilot_sync.bindings.tables import TableDef
from autopilot_sync.host.datastore import Datastore
from autopilot_sync.host.sql import views
from autopilot_sync.host.sql.literals import literal, orderable, type_name
from autopilot_sync.host.sql.parse import DIALECT, parse_select
from autopilot_sync.host.sql.plan import (
    And,
    CompareOp,
    Comparison,
    JoinSpec,
    Or,
    Predicate,
    Projection,
    SelectPlan,
    SqlContext,
    SqlError,
    ViewSource,
    conjuncts,
)
from autopilot_sync.spacetime.algebraic import AlgebraicType

_SQLGLOT_OPS: dict[type[exp.Expression], CompareOp] = {
    exp.EQ: CompareOp.EQ,
    exp.NEQ: CompareOp.NE,
    exp.LT: CompareOp.LT,
    exp.GT: CompareOp.GT,
    exp.LTE: CompareOp.LE,
    exp.GTE: CompareOp.GE,
}


def compile_plan(sql: str, ctx: SqlContext, *, one_off: bool) -> SelectPlan:
    """Parse and compile one query as written, before row-level security (the owner's view of it)."""
    return _compile_select(sql, parse_select(sql), ctx, one_off)


_ALLOWED_SELECT_ARGS = {"expressions", "from", "from_", "where", "limit", "joins", "kind"}


def _compile_select(sql: str, select: exp.Select, ctx: SqlContext, one_off: bool) -> SelectPlan:
    for name, value in select.args.items():
        if name in _ALLOWED_SELECT_ARGS or value in (None, False, [], ""):
            continue
        raise SqlError(f"Unsupported: {name.upper().rstrip('_')} clause")
    if select.args.get("kind"):
        raise SqlError(f"Unsupported: SELECT {select.args['kind']}")
    source = select.args.get("from") or select.args.get("from_")
    if source is None:
        raise SqlError("A FROM clause is required")
    table, alias = _relvar(source.this, ctx)
    joins = select.args.get("joins") or []
    view = _view_of(table, ctx)
    if joins:
        if view is not None:
            raise SqlError(f"Unsupported: a join with the view `{table.name}`; query the view alone")
        return _compile_join(sql, select, table, alias, joins, ctx, one_off)
    scope = _Scope(table, {table.name, *([alias] if alias else [])})
    projection, count_alias = _compile_projection(select.expressions, scope, one_off)
    where = select.args.get("where")
    predicate = _compile_predicate(where.this, scope, ctx) if where is not None else None
    limit = _compile_limit(select.args.get("limit"), one_off)
    return SelectPlan(sql, table, predicate, projection, count_alias, limit, view=view)


def _relvar(table_expr: exp.Expression, ctx: SqlContext) -> tuple[TableDef, str | None]:
    if not isinstance(table_expr, exp.Table) or table_expr.args.get("db") or table_expr.args.get("catalog"):
        raise SqlError(f"Unsupported FROM expression: {table_expr.sql(DIALECT)}")
    table_name = table_expr.name
    store = ctx.datastore.tables.get(table_name)
    if store is None and (found := views.lookup(table_name, ctx)) is not None:
        return found[0], table_expr.alias or None
    if store is None or (not store.table.public and not ctx.private_visible):
        raise SqlError(f"no such table: `{table_name}`. If the table exists, it may be marked private.")
    return store.table, table_expr.alias or None


def _view_of(table: TableDef, ctx: SqlContext) -> ViewSource | None:
    """The view a table found by `_relvar` stands for (None for a stored table)."""
    if table.name in ctx.datastore.tables:
        return None
    found = views.lookup(table.name, ctx)
    return found[1] if found is not None else None


def _compile_join(
    sql: str,
    select: exp.Select,
    table: TableDef,
    alias: str | None,
    joins: list[exp.Join],
    ctx: SqlContext,
    one_off: bool,
) -> SelectPlan:
    join = joins[0]
    on = join.args.get("on")
    kind = join.args.get("kind")
    if (join.args.get("side") or kind not in (None, "INNER")) and kind != "CROSS":
        raise SqlError("Non-inner joins are not supported")
    if on is None:
        if join.args.get("using"):
            raise SqlError("Non-inner joins are not supported")
        raise SqlError("Implicit joins are not supported")
    if len(joins) > 1:
        raise SqlError(f"Invalid number of tables in subscription: {len(joins) + 1}")
    other, other_alias = _relvar(join.this, ctx)
    if _view_of(other, ctx) is not None:
        raise SqlError(f"Unsupported: a join with the view `{other.name}`; query the view alone")
    left_name, right_name = alias or table.name, other_alias or other.name
    if left_name == right_name:
        raise SqlError(f"Duplicate name `{right_name}`")
    if other.name == table.name:
        raise SqlError("Unsupported: self-joins (this host joins two different tables)")
    scope = _JoinScope((table, other), (left_name, right_name))
    while isinstance(on, exp.Paren):
        on = on.this
    if not (isinstance(on, exp.EQ) and isinstance(on.this, exp.Column) and isinstance(on.expression, exp.Column)):
        raise SqlError("Non-inner joins are not supported")
    sides = [scope.resolve(on.this), scope.resolve(on.expression)]
    if sides[0][0] == sides[1][0]:
        raise SqlError(f"Unsupported: a join condition within one table ({on.sql(DIALECT)})")
    sides.sort(key=lambda side: side[0])
    (_, left_col, left_pos, left_ty), (_, right_col, right_pos, right_ty) = sides
    if left_ty != right_ty:
        raise SqlError(f"Unexpected type: (expected) {type_name(left_ty)} != {type_name(right_ty)} (inferred)")
    spec = JoinSpec(other, left_col, left_pos, right_col, right_pos)
    items = select.expressions
    if len(items) == 1 and isinstance(items[0], exp.Star):
        raise SqlError("SELECT * is not supported for joins")
    if not (len(items) == 1 and isinstance(items[0], exp.Column) and isinstance(items[0].this, exp.Star)):
        if not one_off:
            raise SqlError(
                "Column projections are not supported in subscriptions; Subscriptions must return a table type"
            )
        raise SqlError("Unsupported: projections other than `t.*` over a join")
    qualifier = items[0].table
    if qualifier not in scope.names:
        raise SqlError(f"`{qualifier}` is not in scope")
    if qualifier != left_name:  # project the other table: swap the sides
        scope = _JoinScope((other, table), (right_name, left_name))
        spec = JoinSpec(table, right_col, right_pos, left_col, left_pos)
    where = select.args.get("where")
    predicate = _compile_predicate(where.this, scope, ctx) if where is not None else None
    limit = _compile_limit(select.args.get("limit"), one_off)
    plan = SelectPlan(sql, scope.tables[0], predicate, None, None, limit, spec)
    if not one_off:
        _check_join_index(plan, ctx.datastore)
    return plan


def _check_join_index(plan: SelectPlan, datastore: Datastore) -> None:
    """Refuse a subscription the real host's planner could not turn into an index join.

    The planner starts from `projected ⋈ joined` with `joined` as the lookup (index) side, pushes top-level
    `column op literal` conjuncts down to their table, and swaps the sides when only the joined table is filtered. The
    lookup side needs an index whose last column is its join column, every leading column fixed by a `= literal`
    conjunct on that side (`ReorderHashJoin` + `HashToIxJoin` in `physical-plan/src/rules.rs`).
    """
    assert plan.join is not None
    width = len(plan.table.columns)
    terms = [t for t in conjuncts(plan.predicate) if isinstance(t, Comparison)]
    left_filtered = any(t.position < width for t in terms)
    right_filtered = any(t.position >= width for t in terms)
    if right_filtered and not left_filtered:
        lookup, column, fixed = plan.table, plan.join.left_column, {t.column for t in terms if t.position < width}
    else:
        lookup, column = plan.join.table, plan.join.right_column
        fixed = {t.column for t in terms if t.position >= width and t.op is CompareOp.EQ}
    if lookup.event:
        raise SqlError("Event tables cannot be used as the lookup table in subscription joins")
    for group in datastore[lookup.name].indexes:
        if group[-1] == column and all(c in fixed for c in group[:-1]):
            return
    raise SqlError("Subscriptions require indexes on join columns")


@dataclass(frozen=True, slots=True)
class _JoinScope:
    """Two tables by name; a column of the second is addressed at `position + width of the first`."""

    tables: tuple[TableDef, TableDef]
    aliases: tuple[str, str]

    @property
    def names(self) -> set[str]:
        return set(self.aliases)

    def resolve(self, column: exp.Column) -> tuple[int, str, int, AlgebraicType]:
        """(side, column name, position within its own table, type)."""
        qualifier = column.table
        if not qualifier:
            raise SqlError("Names must be qualified when using joins")
        if qualifier not in self.aliases:
            raise SqlError(f"`{qualifier}` is not in scope")
        side = self.aliases.index(qualifier)
        table = self.tables[side]
        name = column.name
        try:
            position = table.column_index(name)
        except KeyError:
            raise SqlError(f"`{table.name}` does not have a field `{name}`") from None
        return side, name, position, table.columns[position][1]

    def column(self, column: exp.Column) -> tuple[str, int, AlgebraicType]:
        side, name, position, ty = self.resolve(column)
        return name, position + (len(self.tables[0].columns) if side else 0), ty


@dataclass(frozen=True, slots=True)
class _Scope:
    table: TableDef
    names: set[str]

    def column(self, column: exp.Column) -> tuple[str, int, AlgebraicType]:
        qualifier = column.table
        if qualifier and qualifier not in self.names:
            raise SqlError(f"`{qualifier}` is not in scope")
        name = column.name
        try:
            position = self.table.column_index(name)
        except KeyError:
            raise SqlError(f"`{self.table.name}` does not have a field `{name}`") from None
        return name, position, self.table.columns[position][1]


def _is_star(item: exp.Expression, scope: _Scope) -> bool:
    if isinstance(item, exp.Star):
        return True
    if isinstance(item, exp.Column) and isinstance(item.this, exp.Star):
        if item.table and item.table not in scope.names:
            raise SqlError(f"`{item.table}` is not in scope")
        return True
    return False


def _compile_projection(
    items: list[exp.Expression], scope: _Scope, one_off: bool
) -> tuple[tuple[Projection, ...] | None, str | None]:
    if len(items) == 1 and _is_star(items[0], scope):
        return None, None
    if any(_is_star(item, scope) for item in items):
        raise SqlError("Mixed wildcard projections are not supported")
    if not one_off:
        raise SqlError("Column projections are not supported in subscriptions; Subscriptions must return a table type")
    if len(items) == 1:
        item = items[0]
        inner = item.this if isinstance(item, exp.Alias) else item
        if isinstance(inner, exp.Count):
            if not isinstance(inner.this, exp.Star) or inner.args.get("distinct"):
                raise SqlError(f"Unsupported aggregate function: {inner.sql(DIALECT)}")
            if not isinstance(item, exp.Alias):
                raise SqlError("Aggregate expressions must have column aliases")
            return None, item.alias
    out: list[Projection] = []
    for item in items:
        inner = item.this if isinstance(item, exp.Alias) else item
        if isinstance(inner, exp.AggFunc):
            raise SqlError(f"Unsupported: aggregate {inner.sql(DIALECT)} mixed with other columns")
        if not isinstance(inner, exp.Column):
            raise SqlError(f"Unsupported projection expression: {inner.sql(DIALECT)}")
        name, position, ty = scope.column(inner)
        out.append(Projection(item.alias if isinstance(item, exp.Alias) else name, position, ty))
    names = [p.name for p in out]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise SqlError(f"Duplicate name `{duplicate}`")
    return tuple(out), None


def _compile_limit(limit: exp.Expression | None, one_off: bool) -> int | None:
    if limit is None:
        return None
    if not one_off:
        raise SqlError("Unsupported: LIMIT in a subscription")
    value = limit.args.get("expression")
    if isinstance(value, exp.Literal) and not value.is_string and value.this.isdigit():
        return int(value.this)
    raise SqlError(f"Unsupported LIMIT expression: {limit.sql(DIALECT)}")


def _compile_predicate(node: exp.Expression, scope: _Scope | _JoinScope, ctx: SqlContext) -> Predicate:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        return And((_compile_predicate(node.this, scope, ctx), _compile_predicate(node.expression, scope, ctx)))
    if isinstance(node, exp.Or):
        return Or((_compile_predicate(node.this, scope, ctx), _compile_predicate(node.expression, scope, ctx)))
    op = _SQLGLOT_OPS.get(type(node))
    if op is None:
        raise SqlError(f"Unsupported expression: {node.sql(DIALECT)}")
    left, right = node.this, node.expression
    if isinstance(left, exp.Column) and isinstance(right, exp.Column):
        raise SqlError(f"Unsupported: comparing two columns ({node.sql(DIALECT)})")
    if not isinstance(left, exp.Column):
        if not isinstance(right, exp.Column):
            raise SqlError(f"Unsupported expression: {node.sql(DIALECT)} (one side must be a column)")
        left, right, op = right, left, op.flipped()
    name, position, ty = scope.column(left)
    value = literal(right, ty, ctx.sender)
    if op not in (CompareOp.EQ, CompareOp.NE) and not orderable(ty):
        raise SqlError(f"Invalid binary operator `{op.value}` for type `{type_name(ty)}`")
    return Comparison(name, position, op, value)
