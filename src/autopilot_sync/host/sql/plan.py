"""What a query compiles to: typed plans and predicates, and the one error every stage raises.

The values here cross every boundary of the SQL pipeline (parse -> compile -> restrict -> scan/join -> execute) and
the subscription engine's; they are frozen and know how to test a row, nothing else.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autopilot_sync.bindings.tables import TableDef
from autopilot_sync.host.datastore import Datastore
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime.algebraic import AlgebraicType
from autopilot_sync.spacetime.moduledef import ViewDef
from autopilot_sync.spacetime.values import Identity

Row = tuple[Any, ...]


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
class ViewSource:
    """The view a plan reads instead of a stored table (`sql/views.py`), and whose rows: the caller's for a view of
    its caller, None for an anonymous view (the same rows for everyone)."""

    view: ViewDef
    sender: Identity | None


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
    view: ViewSource | None = None

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


@dataclass(frozen=True, slots=True)
class SqlContext:
    """What compilation may see: the tables, whether the caller is the owner, and who `:sender` is.

    `private_visible` is true only for the database owner, who sees private tables and is not subject to row-level
    security (as on SpacetimeDB), and for the host's observers (a read-only grant, `HostEngine.reads_everything`);
    everyone else's reads go through the module's visibility filters with `sender`.
    """

    datastore: Datastore
    private_visible: bool = False
    sender: Identity | None = None
