"""Views: a module's read-only function of its caller (or of nobody), subscribable like a table.

SpacetimeDB's views (`spacetimedb.view(...)`, `spacetimedb.anonymousView(...)` in the TypeScript library) return rows
of one product type; a client reads them as if they were a table (`SELECT * FROM my_view`). The module answers with
its library's `ViewResultHeader`: `RowData` followed by the rows, or `RawSql` with a query the host runs instead.
This module holds what the module seam, the SQL layer and the subscription engine share: the view's row type as a
virtual table, the answer of one call, and its typed failure.

Only TypeScript modules have views (`JsModule.call_view`); a Python module declares none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from autopilot_sync.bindings.tables import TableDef
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import moduledef as md
from autopilot_sync.spacetime.values import Identity

if TYPE_CHECKING:
    from autopilot_sync.host.datastore import Datastore


class ViewCallError(Exception):
    """A view failed (it threw, ran over its time or heap limit, or the runner died): its text goes to the reader."""


@dataclass(frozen=True, slots=True)
class ViewAnswer:
    """One view call's answer: its rows as BSATN (duplicates kept), or the query to run instead, and its read set.

    `reads` names the tables the call read through its syscalls: a commit touching none of them cannot change the
    answer (a view reads the datastore and nothing else: no clock, no randomness, no network).
    """

    rows: tuple[bytes, ...] = ()
    sql: str | None = None
    reads: frozenset[str] = frozenset()


@runtime_checkable
class ViewModule(Protocol):
    """A hosted module that serves views (a TypeScript module)."""

    def call_view(self, view: md.ViewDef, sender: Identity | None, datastore: Datastore) -> ViewAnswer:
        """Run `view` over the current state of `datastore` for `sender` (None for an anonymous view)."""
        ...


def row_type_of(view: md.ViewDef, typespace: tuple[at.AlgebraicType, ...]) -> at.ProductType:
    """The product type of one row of `view` (its return type is an array or an option of that product)."""
    returns = md.resolve(view.return_type, typespace)
    if isinstance(returns, at.ArrayType):
        inner = returns.element
    elif at.is_option(returns):
        assert isinstance(returns, at.SumType)
        inner = returns.variants[0].type
    else:
        raise md.ModuleDefError(f"view {view.name} returns neither an array nor an option of rows")
    row = md.resolve_deep(inner, typespace)
    if not isinstance(row, at.ProductType):
        raise md.ModuleDefError(f"view {view.name} returns values that are not rows (not a product type)")
    return row


def view_table(view: md.ViewDef, typespace: tuple[at.AlgebraicType, ...]) -> TableDef:
    """The view as a read-only virtual table: its name and its row type's columns (SQL and subscriptions read it)."""
    row = row_type_of(view, typespace)
    columns = tuple((element.name or str(i), element.type) for i, element in enumerate(row.elements))
    return TableDef(view.name, columns, public=view.is_public)
