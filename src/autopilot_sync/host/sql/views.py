"""Views in queries: a view name read as a virtual table whose rows come from calling the view.

`SELECT * FROM my_view [WHERE …]` compiles against the view's row type (`view_call.view_table`); the plan records the
view and, for a per-caller view, whose rows it reads (`ViewSource`), so a plan (and the subscription shapes built on
plans) is per caller for `spacetimedb.view` and shared by everyone for `spacetimedb.anonymousView`. Its rows are the
view's answer (duplicates kept: a view returns a multiset), or, when the view answered with a query (`RawSql`), that
query's rows; the plan's WHERE then filters them. Row-level security does not apply: a view decides what it shows.
"""

from __future__ import annotations

from autopilot_sync.bindings.tables import TableDef
from autopilot_sync.host.datastore import Datastore
from autopilot_sync.host.sql.plan import Row, SelectPlan, SqlContext, SqlError, ViewSource
from autopilot_sync.host.view_call import ViewAnswer, ViewCallError, ViewModule, view_table
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime import moduledef as md

#: The virtual table of each view, per module (one object per view, so a cached plan stays current while the module
#: is hosted).
_TABLES: dict[tuple[object, str], TableDef] = {}
_TABLES_MAX = 1024


def lookup(name: str, ctx: SqlContext) -> tuple[TableDef, ViewSource] | None:
    """The view `name` as a table and the source a plan over it reads, or None when the module has no such view.

    A private view is seen only by the owner; a per-caller view needs the caller's identity.
    """
    module = ctx.datastore.module
    if not isinstance(module, ViewModule):
        return None
    definition = module.definition()
    view = next((v for v in definition.views if v.name == name), None)
    if view is None or (not view.is_public and not ctx.private_visible):
        return None
    key = (module, name)
    table = _TABLES.get(key)
    if table is None:
        try:
            table = view_table(view, definition.typespace)
        except md.ModuleDefError as exc:
            raise SqlError(str(exc)) from None
        if len(_TABLES) >= _TABLES_MAX:
            _TABLES.clear()
        _TABLES[key] = table
    if view.is_anonymous:
        return table, ViewSource(view, None)
    if ctx.sender is None:
        raise SqlError(f"`{name}` is a view of its caller and this read has no caller identity")
    return table, ViewSource(view, ctx.sender)


def is_current(plan: SelectPlan, datastore: Datastore) -> bool:
    """Whether a cached view plan still reads the view the hosted module serves."""
    return _TABLES.get((datastore.module, plan.table.name)) is plan.table


def call(source: ViewSource, datastore: Datastore) -> ViewAnswer:
    """Call the view over the current state (raises `ViewCallError`)."""
    module = datastore.module
    if not isinstance(module, ViewModule):
        raise ViewCallError(f"the hosted module serves no view {source.view.name}")
    return module.call_view(source.view, source.sender, datastore)


def answer_rows(
    plan: SelectPlan, answer: ViewAnswer, datastore: Datastore
) -> tuple[list[tuple[bytes, Row]], frozenset[str]]:
    """Every (bytes, row) of the view's answer that the plan's WHERE keeps, and every table the answer read.

    A `RawSql` answer is compiled as the owner's query (the view decides what it shows) and must select rows of the
    view's own type.
    """
    if answer.sql is None:
        codec = bsatn.codec(plan.table.row_type)
        rows = [(row_bytes, tuple(codec.decode(row_bytes))) for row_bytes in answer.rows]
        reads = answer.reads
    else:
        from autopilot_sync.host.sql.compile import compile_query
        from autopilot_sync.host.sql.execute import plan_rows

        sender = plan.view.sender if plan.view is not None else None
        inner = compile_query(answer.sql, SqlContext(datastore, private_visible=True, sender=sender))
        if (
            not inner.returns_rows
            or inner.view is not None
            or _types(inner.output_type()) != _types(plan.table.row_type)
        ):
            raise ViewCallError(
                f"view {plan.table.name} answered with a query that does not select its rows: {answer.sql}"
            )
        rows = plan_rows(inner, datastore)
        reads = frozenset(inner.tables())
    if plan.predicate is not None:
        rows = [(row_bytes, row) for row_bytes, row in rows if plan.matches(row)]
    return rows, reads


def view_rows(plan: SelectPlan, datastore: Datastore) -> list[tuple[bytes, Row]]:
    """A view plan's rows now (a one-off query, `/sql`): a failing view is the query's error."""
    assert plan.view is not None
    try:
        rows, _ = answer_rows(plan, call(plan.view, datastore), datastore)
    except ViewCallError as exc:
        raise SqlError(str(exc)) from None
    return rows


def _types(row: at.ProductType) -> tuple[at.AlgebraicType, ...]:
    """A row type's column types in order (a query's rows fit a view's when these agree, whatever the names)."""
    return tuple(element.type for element in row.elements)
