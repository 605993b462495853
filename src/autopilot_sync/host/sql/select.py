"""The host's SQL: the subset SpacetimeDB accepts for subscriptions and one-off queries, parsed into typed plans.

Subscriptions (`SELECT * FROM t [WHERE pred]`) must return whole rows of one table, because the client caches rows by
table; one-off queries over HTTP `/sql` may also project columns, count rows (`COUNT(*) AS n`) and `LIMIT`. Predicates
are comparisons of a column with a literal (`= != <> < > <= >=`) joined by `AND`/`OR`; `:sender` stands for the
caller's identity. Every literal is checked against its column's type when the query is compiled, so a query that
compiles cannot fail while it runs, whether on the snapshot or on every later transaction.

Parsing goes through sqlglot's PostgreSQL dialect (the closest to SpacetimeDB's `sqlparser` dialect: `<>`, `X'..'`,
double-quoted identifiers); everything outside the subset is refused with an error naming what is unsupported, in the
wording of the real host's `sql-parser`/`expr` crates where one exists.

Joins: `SELECT t.* FROM t JOIN u ON t.a = u.b [WHERE ...]` (one inner equi-join, names qualified, the result is rows of
the projected table `t`). The WHERE clause is evaluated on the pair `t_row + u_row` (positions of `u`'s columns are
offset by the width of `t`). Subscriptions follow the real host's planner rule: the lookup side of the join (`u`, or
`t` when only `u` is filtered) needs an index whose last column is its join column. `JoinMirror` and `join_members`
are what the subscription engine maintains join results with (see subscriptions.py).

Evaluation uses a B-tree index when a top-level conjunct is an equality (or range) on an index's leading column, else
scans the table.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from autopilot_sync.host.datastore import Datastore, TableStore
from autopilot_sync.host.module_api import TableDef
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime.algebraic import INT_RANGES, AlgebraicType, ArrayType, Primitive, PrimitiveKind
from autopilot_sync.spacetime.sats_json import to_untyped_json
from autopilot_sync.spacetime.values import ConnectionId, Identity, TimeDuration, Timestamp

Row = tuple[Any, ...]

#: sqlglot dialect used to read queries.
DIALECT = "postgres"
#: Largest query text accepted (the real host has no fixed limit; this keeps a hostile client from feeding megabytes).
MAX_QUERY_CHARS = 64 * 1024
#: Most AND/OR/NOT operators in one query (each is a level of the parse tree sqlglot and the compiler recurse into).
MAX_BOOLEAN_OPERATORS = 256
#: Deepest nesting of parentheses in one query.
MAX_PARENTHESES_DEPTH = 32


class SqlError(ValueError):
    """A query outside the supported subset, or ill-typed; the message is what the client sees."""


class CompareOp(enum.Enum):
    """Comparison operators; the value is the canonical SQL spelling."""

    EQ = "="
    NE = "!="
    LT = "<"
    GT = ">"
    LE = "<="
    GE = ">="

    def flipped(self) -> CompareOp:
        """The operator with its operands swapped (`5 < x` is `x > 5`)."""
        return _FLIPPED[self]


_FLIPPED = {
    CompareOp.EQ: CompareOp.EQ,
    CompareOp.NE: CompareOp.NE,
    CompareOp.LT: CompareOp.GT,
    CompareOp.GT: CompareOp.LT,
    CompareOp.LE: CompareOp.GE,
    CompareOp.GE: CompareOp.LE,
}

_SQLGLOT_OPS: dict[type[exp.Expression], CompareOp] = {
    exp.EQ: CompareOp.EQ,
    exp.NEQ: CompareOp.NE,
    exp.LT: CompareOp.LT,
    exp.GT: CompareOp.GT,
    exp.LTE: CompareOp.LE,
    exp.GTE: CompareOp.GE,
}

_TESTS: dict[CompareOp, Callable[[Any, Any], bool]] = {
    CompareOp.EQ: lambda a, b: bool(a == b),
    CompareOp.NE: lambda a, b: bool(a != b),
    CompareOp.LT: lambda a, b: bool(a < b),
    CompareOp.GT: lambda a, b: bool(a > b),
    CompareOp.LE: lambda a, b: bool(a <= b),
    CompareOp.GE: lambda a, b: bool(a >= b),
}


# ----- the plan -----


@dataclass(frozen=True, slots=True)
class Comparison:
    """`column op value`, with `value` already converted to the column's Python representation."""

    column: str
    position: int
    op: CompareOp
    value: Any

    def test(self, row: Row) -> bool:
        """Whether a row satisfies this comparison."""
        return _TESTS[self.op](row[self.position], self.value)


@dataclass(frozen=True, slots=True)
class And:
    """Every part holds."""

    parts: tuple[Predicate, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """At least one part holds."""

    parts: tuple[Predicate, ...]


Predicate = Comparison | And | Or


def matches(predicate: Predicate | None, row: Row) -> bool:
    """Evaluate a predicate on a row (None = every row)."""
    if predicate is None:
        return True
    if isinstance(predicate, Comparison):
        return predicate.test(row)
    if isinstance(predicate, And):
        return all(matches(part, row) for part in predicate.parts)
    return any(matches(part, row) for part in predicate.parts)


def conjuncts(predicate: Predicate | None) -> tuple[Predicate, ...]:
    """The top-level AND terms of a predicate (itself when it is not an AND)."""
    if predicate is None:
        return ()
    if isinstance(predicate, And):
        return tuple(term for part in predicate.parts for term in conjuncts(part))
    return (predicate,)


def equality_terms(predicate: Predicate | None) -> tuple[Comparison, ...]:
    """Top-level `column = literal` conjuncts: what the subscription index and the index scan key on."""
    return tuple(t for t in conjuncts(predicate) if isinstance(t, Comparison) and t.op is CompareOp.EQ)


@dataclass(frozen=True, slots=True)
class Projection:
    """One output column of a one-off query: a table column, possibly renamed."""

    name: str
    position: int
    type: AlgebraicType


@dataclass(frozen=True, slots=True)
class JoinSpec:
    """`JOIN table ON <projected>.left_column = table.right_column`; `table` is the joined (non-projected) table."""

    table: TableDef
    left_column: str
    left_position: int
    right_column: str
    right_position: int


@dataclass(frozen=True, slots=True)
class SelectPlan:
    """A compiled query over one table.

    `projection` is None for whole rows (`*`); `count_alias` is set for `SELECT COUNT(*) AS alias`. Subscriptions only
    ever hold plans with neither (`returns_rows`).
    """

    sql: str
    table: TableDef
    predicate: Predicate | None = None
    projection: tuple[Projection, ...] | None = None
    count_alias: str | None = None
    limit: int | None = None
    join: JoinSpec | None = None

    @property
    def returns_rows(self) -> bool:
        """True when the result is whole rows of `table` (what subscriptions and WebSocket one-off queries need)."""
        return self.projection is None and self.count_alias is None

    def matches(self, row: Row) -> bool:
        """Whether a row of `table` is in the result (before LIMIT); for a join, whether the pair `row` (the projected
        row followed by the joined row) is."""
        return matches(self.predicate, row)

    def tables(self) -> tuple[str, ...]:
        """The tables the plan reads: the projected one, then the joined one."""
        return (self.table.name,) if self.join is None else (self.table.name, self.join.table.name)

    def output_type(self) -> at.ProductType:
        """The product type of each result row (the `schema` of an HTTP `/sql` result)."""
        if self.count_alias is not None:
            return at.product((self.count_alias, at.U64))
        if self.projection is not None:
            return at.product(*((p.name, p.type) for p in self.projection))
        return self.table.row_type


# ----- compiling -----


@dataclass(frozen=True, slots=True)
class SqlContext:
    """What compilation may see: the tables, whether the caller is the owner, and who `:sender` is.

    `private_visible` is true only for the database owner, who sees private tables and is not subject to row-level
    security (as on SpacetimeDB); everyone else's reads go through the module's visibility filters with `sender`.
    """

    datastore: Datastore
    private_visible: bool = False
    sender: Identity | None = None


def compile_subscription(sql: str, ctx: SqlContext) -> SelectPlan:
    """Compile a subscription query: whole rows of one table, optionally filtered."""
    plan = _compile(sql, ctx, one_off=False)
    return plan


def compile_query(sql: str, ctx: SqlContext) -> SelectPlan:
    """Compile a one-off query (projections, `COUNT(*)` and `LIMIT` allowed)."""
    return _compile(sql, ctx, one_off=True)


def _compile(sql: str, ctx: SqlContext, *, one_off: bool) -> SelectPlan:
    if len(sql) > MAX_QUERY_CHARS:
        raise SqlError(f"Unsupported: query of {len(sql)} characters (the limit is {MAX_QUERY_CHARS})")
    if not sql.strip():
        raise SqlError("Empty SQL query")
    _check_size(sql)
    _check_statement_keyword(sql)
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except ParseError as exc:
        raise SqlError(f"sql parser error: {_first_line(str(exc))}") from None
    except Exception as exc:  # sqlglot raises assorted errors on garbage (tokenizer, recursion)
        raise SqlError(f"sql parser error: {_first_line(str(exc)) or type(exc).__name__}") from None
    if not statements:
        raise SqlError("Empty SQL query")
    if len(statements) > 1:
        raise SqlError("Multiple SQL statements are not supported")
    (statement,) = statements
    if not isinstance(statement, exp.Select):
        what = type(statement).__name__.upper()
        raise SqlError(f"Unsupported: Non-SELECT queries ({what}); this host serves read-only SQL")
    plan = _compile_select(sql, statement, ctx, one_off)
    if ctx.private_visible:
        return plan
    return apply_visibility(plan, ctx)


_STRING_LITERALS = re.compile(r"'(?:[^']|'')*'")
_BOOLEAN_OPERATORS = re.compile(r"\b(?:and|or|not)\b", re.IGNORECASE)


def _check_size(sql: str) -> None:
    """Refuse a query whose boolean operators or parentheses exceed the bounds, before sqlglot parses it.

    Parsing and compiling recurse per operator of a chain (`a AND b AND ...` is a tree as deep as it is long), so a
    few thousand terms exhaust the stack; the bounds keep every query far from that (docs/security.md).
    """
    code = _STRING_LITERALS.sub("''", sql)
    operators = len(_BOOLEAN_OPERATORS.findall(code))
    if operators > MAX_BOOLEAN_OPERATORS:
        raise SqlError(
            f"Unsupported: query with {operators} AND/OR/NOT operators (the limit is {MAX_BOOLEAN_OPERATORS})"
        )
    depth = deepest = 0
    for char in code if code.count("(") > MAX_PARENTHESES_DEPTH else ():
        if char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
    if deepest > MAX_PARENTHESES_DEPTH:
        raise SqlError(f"Unsupported: parentheses nested {deepest} deep (the limit is {MAX_PARENTHESES_DEPTH})")


#: Words sqlparser 0.38 (SpacetimeDB's SQL parser) starts a statement with (`Parser::parse_statement`).
_STATEMENT_KEYWORDS = frozenset(
    [
        "KILL",
        "DESCRIBE",
        "EXPLAIN",
        "ANALYZE",
        "SELECT",
        "WITH",
        "VALUES",
        "TRUNCATE",
        "MSCK",
        "CREATE",
        "CACHE",
        "DROP",
        "DISCARD",
        "DECLARE",
        "FETCH",
        "DELETE",
        "INSERT",
        "REPLACE",
        "UNCACHE",
        "UPDATE",
        "ALTER",
        "CALL",
        "COPY",
        "CLOSE",
        "SET",
        "SHOW",
        "USE",
        "GRANT",
        "REVOKE",
        "START",
        "BEGIN",
        "SAVEPOINT",
        "RELEASE",
        "COMMIT",
        "ROLLBACK",
        "ASSERT",
        "DEALLOCATE",
        "EXECUTE",
        "PREPARE",
        "MERGE",
        "PRAGMA",
        "INSTALL",
        "LOAD",
        "TABLE",
    ]
)
_FIRST_WORD = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_$]*)")


def _check_statement_keyword(sql: str) -> None:
    """Refuse a statement that starts with a word no statement starts with, in SpacetimeDB's parser's words.

    sqlglot reads `SELEC * FRM x` as an expression; sqlparser (`Parser::parse_statement`, `expected` with the
    token's location) says `sql parser error: Expected an SQL statement, found: SELEC at Line: 1, Column 1`.
    """
    match = _FIRST_WORD.match(sql)
    if match is None or match.group(1).upper() in _STATEMENT_KEYWORDS:
        return
    start = match.start(1)
    line = sql.count("\n", 0, start) + 1
    column = start - (sql.rfind("\n", 0, start) + 1) + 1
    raise SqlError(
        f"sql parser error: Expected an SQL statement, found: {match.group(1)} at Line: {line}, Column {column}"
    )


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


# ----- row-level security -----

#: Compiled visibility filters per (module, table, sender): compiling parses SQL, and a busy reader asks often.
_RULES: dict[tuple[object, str, Identity], SelectPlan] = {}
_RULES_MAX = 4096


def _rule(table: str, ctx: SqlContext) -> SelectPlan | None:
    """The table's visibility filter compiled for `ctx.sender` (None when the table has none)."""
    module = ctx.datastore.module
    sql = module.visibility_filters.get(table)
    if sql is None:
        return None
    if ctx.sender is None:
        raise SqlError(f"`{table}` is visible row by row and this read has no caller identity")
    key = (module, table, ctx.sender)
    plan = _RULES.get(key)
    if plan is None:
        plan = _compile(sql, SqlContext(ctx.datastore, private_visible=True, sender=ctx.sender), one_off=False)
        if plan.table.name != table or not plan.returns_rows:
            raise SqlError(f"the visibility filter of `{table}` must select rows of `{table}`: {sql}")
        if len(_RULES) >= _RULES_MAX:
            _RULES.clear()
        _RULES[key] = plan
    return plan


def check_visibility_filters(datastore: Datastore) -> None:
    """Compile every visibility filter of the loaded module once (raises SqlError naming the bad one)."""
    probe = SqlContext(datastore, sender=Identity(0))
    for table in datastore.module.visibility_filters:
        _rule(table, probe)


def apply_visibility(plan: SelectPlan, ctx: SqlContext) -> SelectPlan:
    """The plan restricted to the rows the module's visibility filters let `ctx.sender` see.

    SpacetimeDB's row-level security, for this host's plan shapes: a query over a filtered table reads only the rows
    the filter selects, so the result is the query ANDed with the filter. A single-table filter adds its predicate; a
    filter with a join (`SELECT t.* FROM t JOIN u ON t.a = u.b WHERE u.c = :sender`) turns a single-table query into
    that join, with both predicates, and the joined table's own single-table filter applies too (SpacetimeDB applies
    filters to the tables a filter joins as well). A query that is itself a join may read filtered tables only when
    their filters have no join (this host evaluates one join per query), else it is refused with that reason.
    """
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
    if joins:
        return _compile_join(sql, select, table, alias, joins, ctx, one_off)
    scope = _Scope(table, {table.name, *([alias] if alias else [])})
    projection, count_alias = _compile_projection(select.expressions, scope, one_off)
    where = select.args.get("where")
    predicate = _compile_predicate(where.this, scope, ctx) if where is not None else None
    limit = _compile_limit(select.args.get("limit"), one_off)
    return SelectPlan(sql, table, predicate, projection, count_alias, limit)


def _relvar(table_expr: exp.Expression, ctx: SqlContext) -> tuple[TableDef, str | None]:
    if not isinstance(table_expr, exp.Table) or table_expr.args.get("db") or table_expr.args.get("catalog"):
        raise SqlError(f"Unsupported FROM expression: {table_expr.sql(DIALECT)}")
    table_name = table_expr.name
    store = ctx.datastore.tables.get(table_name)
    if store is None or (not store.table.public and not ctx.private_visible):
        raise SqlError(f"no such table: `{table_name}`. If the table exists, it may be marked private.")
    return store.table, table_expr.alias or None


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
        raise SqlError(f"Unexpected type: (expected) {_type_name(left_ty)} != {_type_name(right_ty)} (inferred)")
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
    value = _literal(right, ty, ctx)
    if op not in (CompareOp.EQ, CompareOp.NE) and not _orderable(ty):
        raise SqlError(f"Invalid binary operator `{op.value}` for type `{_type_name(ty)}`")
    return Comparison(name, position, op, value)


# ----- literals -----

_FLOATS = (PrimitiveKind.F32, PrimitiveKind.F64)


def _type_name(ty: AlgebraicType) -> str:
    if isinstance(ty, Primitive):
        return ty.kind.json_name
    special = at.special_tag(ty)
    if special == at.IDENTITY_TAG:
        return "Identity"
    if special == at.CONNECTION_ID_TAG:
        return "ConnectionId"
    if special == at.TIMESTAMP_TAG:
        return "Timestamp"
    if special == at.TIME_DURATION_TAG:
        return "TimeDuration"
    if ty == at.BYTES:
        return "Array<U8>"
    if isinstance(ty, ArrayType):
        return f"Array<{_type_name(ty.element)}>"
    if at.is_option(ty):
        return "Option"
    return type(ty).__name__.removesuffix("Type")


def _orderable(ty: AlgebraicType) -> bool:
    if isinstance(ty, Primitive):
        return ty.kind is not PrimitiveKind.BOOL
    return at.special_tag(ty) is not None or ty == at.BYTES


@dataclass(frozen=True, slots=True)
class _Lit:
    kind: str  # "int" | "float" | "string" | "hex" | "bool" | "sender"
    text: str
    value: Any


def _read_literal(node: exp.Expression, ctx: SqlContext) -> _Lit:
    negative = False
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Neg):
        negative, node = True, node.this
    if isinstance(node, exp.Literal):
        text = str(node.this)
        if node.is_string:
            if negative:
                raise SqlError(f"Unsupported expression: -{node.sql(DIALECT)}")
            return _Lit("string", f"'{text}'", text)
        sign = "-" if negative else ""
        try:
            return _Lit("int", sign + text, int(sign + text))
        except ValueError:
            try:
                number = float(sign + text)
            except ValueError:
                raise SqlError(f"Unsupported literal expression: {text}") from None
            return _Lit("float", sign + text, number)
    if isinstance(node, exp.HexString) and not negative:
        digits = str(node.this)
        return _Lit("hex", f"0x{digits}", digits)
    if isinstance(node, exp.Boolean) and not negative:
        return _Lit("bool", str(node.this).lower(), bool(node.this))
    if isinstance(node, exp.Placeholder) and not negative and node.name == "sender":
        if ctx.sender is None:
            raise SqlError("`:sender` is not available here")
        return _Lit("sender", ":sender", ctx.sender)
    raise SqlError(f"Unsupported literal expression: {('-' if negative else '') + node.sql(DIALECT)}")


def _literal(node: exp.Expression, ty: AlgebraicType, ctx: SqlContext) -> Any:
    lit = _read_literal(node, ctx)
    try:
        value = _convert(lit, ty)
    except SqlError:
        raise
    except (ValueError, OverflowError):
        value = None
    if value is None:
        raise SqlError(f"The literal expression `{lit.text}` cannot be parsed as type `{_type_name(ty)}`")
    return value


def _hex_bytes(lit: _Lit) -> bytes | None:
    if lit.kind == "hex":
        digits = str(lit.value)
    elif lit.kind == "string":
        digits = str(lit.value).removeprefix("0x")
    else:
        return None
    if len(digits) % 2:
        return None
    return bytes.fromhex(digits)


def _convert(lit: _Lit, ty: AlgebraicType) -> Any:
    """The literal as a value of `ty` (None when it cannot be one)."""
    if isinstance(ty, Primitive):
        kind = ty.kind
        if kind in INT_RANGES:
            if lit.kind == "int":
                number = int(lit.value)
            elif lit.kind == "hex":
                number = int(str(lit.value), 16)
            else:
                return None
            low, high = INT_RANGES[kind]
            return number if low <= number <= high else None
        if kind in _FLOATS:
            if lit.kind not in ("int", "float"):
                return None
            number_f = float(lit.value)
            return number_f if math.isfinite(number_f) else None
        if kind is PrimitiveKind.STRING:
            return lit.value if lit.kind == "string" else None
        if kind is PrimitiveKind.BOOL:
            return lit.value if lit.kind == "bool" else None
        return None
    special = at.special_tag(ty)
    if special == at.IDENTITY_TAG:
        if lit.kind == "sender":
            return lit.value
        raw = _hex_bytes(lit)
        return Identity.from_be_bytes(raw) if raw is not None and len(raw) == 32 else None
    if special == at.CONNECTION_ID_TAG:
        raw = _hex_bytes(lit)
        return ConnectionId(int.from_bytes(raw, "big")) if raw is not None and len(raw) == 16 else None
    if special == at.TIMESTAMP_TAG:
        if lit.kind == "int":
            return Timestamp(int(lit.value))
        if lit.kind == "string":
            return _parse_timestamp(str(lit.value))
        return None
    if special == at.TIME_DURATION_TAG:
        return TimeDuration(int(lit.value)) if lit.kind == "int" else None
    if ty == at.BYTES:
        return _hex_bytes(lit)
    raise SqlError(f"Invalid binary operator `=` for type `{_type_name(ty)}` (comparisons need a scalar column)")


def _parse_timestamp(text: str) -> Timestamp | None:
    import datetime as dt

    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    delta = parsed - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return Timestamp((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)


# ----- evaluation -----


@dataclass(frozen=True, slots=True)
class AccessPath:
    """How a plan reads its table: one index equality, one index range, or a full scan (for tests and EXPLAIN)."""

    kind: str  # "index_eq" | "index_range" | "scan"
    column: str | None = None


def access_path(plan: SelectPlan, store: TableStore) -> AccessPath:
    """The cheapest way this host knows to find the plan's candidate rows."""
    chosen = _choose_index(plan, store)
    if chosen is None:
        return AccessPath("scan")
    term, _ = chosen
    return AccessPath("index_eq" if term.op is CompareOp.EQ else "index_range", term.column)


def _choose_index(plan: SelectPlan, store: TableStore) -> tuple[Comparison, Any] | None:
    best: tuple[Comparison, Any] | None = None
    for term in conjuncts(plan.predicate):
        if not isinstance(term, Comparison) or term.op is CompareOp.NE:
            continue
        try:
            index = store.index_for((term.column,))
        except KeyError:
            continue
        if term.op is CompareOp.EQ:
            return term, index
        if best is None:
            best = (term, index)
    return best


def candidate_rows(plan: SelectPlan, store: TableStore) -> Iterator[tuple[bytes, Row]]:
    """Rows that may match: from an index when a conjunct allows it, else every row. The caller still filters."""
    chosen = _choose_index(plan, store)
    if chosen is None:
        yield from list(store.rows.items())
        return
    term, index = chosen
    if term.op is CompareOp.EQ:
        keys: Iterable[bytes] = index.lookup((term.value,))
    else:
        low = (term.value,) if term.op in (CompareOp.GT, CompareOp.GE) else None
        high = (term.value,) if term.op in (CompareOp.LT, CompareOp.LE) else None
        keys = _prefix_range(index, low, high, term.op)
    rows = store.rows
    for row_bytes in list(keys):
        row = rows.get(row_bytes)
        if row is not None:
            yield row_bytes, row


def _prefix_range(index: Any, low: Row | None, high: Row | None, op: CompareOp) -> Iterator[bytes]:
    # Index keys may be longer than one column; a one-column bound must then cover every key with that prefix, so use
    # inclusive bounds and let the caller's predicate check drop the boundary rows a strict operator excludes.
    if len(index.columns) > 1:
        from autopilot_sync.host.datastore import TOP

        if high is not None:
            high = (*high, TOP)
        return index.range(low, high)  # type: ignore[no-any-return]
    inclusive = (op is not CompareOp.GT, op is not CompareOp.LT)
    return index.range(low, high, inclusive)  # type: ignore[no-any-return]


def matching_rows(plan: SelectPlan, store: TableStore) -> list[tuple[bytes, Row]]:
    """Every (bytes, row) of the table the plan selects, honouring LIMIT."""
    out: list[tuple[bytes, Row]] = []
    limit = plan.limit
    if limit == 0:
        return out
    for row_bytes, row in candidate_rows(plan, store):
        if plan.matches(row):
            out.append((row_bytes, row))
            if limit is not None and len(out) >= limit:
                break
    return out


@dataclass(frozen=True, slots=True)
class QueryResult:
    """A one-off query's answer: output rows as tuples (projected/counted) and, for whole-row plans, their bytes."""

    plan: SelectPlan
    rows: tuple[Row, ...]
    row_bytes: tuple[bytes, ...] | None
    duration_micros: int = field(default=0)


def execute(plan: SelectPlan, datastore: Datastore) -> QueryResult:
    """Run a compiled plan against the current state."""
    started = time.perf_counter_ns()
    if plan.join is not None:
        unlimited = plan if plan.count_alias is None else dataclasses.replace(plan, limit=None)
        found = join_rows(unlimited, datastore)
    else:
        store = datastore[plan.table.name]
        counted = plan if plan.count_alias is None else SelectPlan(plan.sql, plan.table, plan.predicate)
        found = matching_rows(counted, store)
    if plan.count_alias is not None:
        rows: tuple[Row, ...] = () if plan.limit == 0 else ((len(found),),)
        return QueryResult(plan, rows, None, (time.perf_counter_ns() - started) // 1000)
    if plan.projection is None:
        return QueryResult(
            plan, tuple(r for _, r in found), tuple(b for b, _ in found), (time.perf_counter_ns() - started) // 1000
        )
    positions = [p.position for p in plan.projection]
    projected = tuple(tuple(row[i] for i in positions) for _, row in found)
    return QueryResult(plan, projected, None, (time.perf_counter_ns() - started) // 1000)


def sql_json_result(
    datastore: Datastore, sql: str, *, private_visible: bool = False, sender: Identity | None = None
) -> list[dict[str, Any]]:
    """The body of HTTP `POST /v1/database/:name/sql`: `[{schema, rows, total_duration_micros, stats}]`.

    Matches `SqlStmtResult` in the real host's `client-api-messages/src/http.rs`: `schema` is the SATS-JSON of the
    result's product type (`{"elements": [...]}`), `rows` are untyped SATS-JSON (each row a JSON array), `stats`
    counts writes (always zero here: only SELECT is served). Raises SqlError, which the route turns into a 400 with
    the message as the body; the route also sets `spacetime-execution-duration-micros` from `total_duration_micros`.
    """
    started = time.perf_counter_ns()
    plan = compile_query(sql, SqlContext(datastore, private_visible=private_visible, sender=sender))
    result = execute(plan, datastore)
    out_type = plan.output_type()
    rows = [to_untyped_json(out_type, row) for row in result.rows]
    return [
        {
            "schema": at.to_json(out_type)["Product"],
            "rows": rows,
            "total_duration_micros": (time.perf_counter_ns() - started) // 1000,
            "stats": {"rows_inserted": 0, "rows_deleted": 0, "rows_updated": 0},
        }
    ]


# ----- joins -----


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def join_rows(plan: SelectPlan, datastore: Datastore) -> list[tuple[bytes, Row]]:
    """Rows of the projected table, one per matching (projected, joined) pair (bag semantics, as the real host's
    join), honouring LIMIT."""
    assert plan.join is not None
    spec = plan.join
    joined = datastore[spec.table.name]
    try:
        index: Any = joined.index_for((spec.right_column,))
        if index.columns != (spec.right_column,):
            index = None
    except KeyError:
        index = None
    by_value: dict[Any, list[Row]] | None = None
    if index is None:
        by_value = {}
        for row in joined.rows.values():
            by_value.setdefault(_hashable(row[spec.right_position]), []).append(row)
    out: list[tuple[bytes, Row]] = []
    if plan.limit == 0:
        return out
    # the projected table's own conjuncts pick its candidate rows through an index when they can
    width = len(plan.table.columns)
    own = tuple(t for t in conjuncts(plan.predicate) if isinstance(t, Comparison) and t.position < width)
    scan = SelectPlan(plan.sql, plan.table, And(own) if own else None)
    for row_bytes, row in candidate_rows(scan, datastore[plan.table.name]):
        value = _hashable(row[spec.left_position])
        if by_value is not None:
            partners: Iterable[Row] = by_value.get(value, ())
        else:
            partners = [joined.rows[b] for b in index.lookup((value,))]
        for partner in partners:
            if plan.matches(row + partner):
                out.append((row_bytes, row))
                if plan.limit is not None and len(out) >= plan.limit:
                    return out
    return out


def plan_rows(plan: SelectPlan, datastore: Datastore) -> list[tuple[bytes, Row]]:
    """Every (bytes, row) a whole-row plan selects, join or not (a joined row may repeat, once per partner)."""
    if plan.join is not None:
        return join_rows(plan, datastore)
    return matching_rows(plan, datastore[plan.table.name])


class JoinMirror:
    """The rows of one table grouped by one column, as of a commit offset: what a join subscription reads.

    The subscription engine hears of a transaction only once it is durable, when the datastore may already hold later
    transactions; a join's result at offset k needs both tables at offset k, so the engine keeps this copy (the same
    row objects, grouped) and advances it with every committed transaction it is told about.
    """

    def __init__(self, store: TableStore, position: int, offset: int) -> None:
        self.position = position
        self.offset = offset
        self.by_value: dict[Any, dict[bytes, Row]] = {}
        if not store.table.event:
            for row_bytes, row in store.rows.items():
                self.by_value.setdefault(_hashable(row[position]), {})[row_bytes] = row

    def get(self, value: Any) -> dict[bytes, Row]:
        """Rows whose column equals `value` (do not mutate)."""
        return self.by_value.get(_hashable(value), _EMPTY)

    def apply(self, offset: int, inserts: Iterable[tuple[bytes, Row]], deletes: Iterable[tuple[bytes, Row]]) -> None:
        """Advance to `offset` by one transaction's change to this table (a no-op for offsets already included)."""
        if offset <= self.offset:
            return
        self.offset = offset
        position = self.position
        for row_bytes, row in deletes:
            value = _hashable(row[position])
            bucket = self.by_value.get(value)
            if bucket is not None:
                bucket.pop(row_bytes, None)
                if not bucket:
                    del self.by_value[value]
        for row_bytes, row in inserts:
            self.by_value.setdefault(_hashable(row[position]), {})[row_bytes] = row


_EMPTY: dict[bytes, Row] = {}


def has_partner(plan: SelectPlan, row: Row, joined: JoinMirror) -> bool:
    """Whether a row of the projected table joins some row of `joined` satisfying the WHERE clause."""
    assert plan.join is not None
    return any(plan.matches(row + partner) for partner in joined.get(row[plan.join.left_position]).values())
