"""The `Module`: tables, reducers, lifecycle hooks, a start hook and visibility filters, collected by decorators.

A module is data (table and reducer definitions) plus plain functions; the host owns storage, transactions and the
network. `module_def()` describes the module as the version-neutral definition of `spacetime/moduledef.py`, which
the host serves as `RawModuleDefV9` or `V10` at `/v1/database/:name/schema` (as SpacetimeDB's bindings describe a
module to the host).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from autopilot_sync.bindings.reducers import Lifecycle, ReducerDef, ReducerFn, StartHook
from autopilot_sync.bindings.tables import TableDef, row_class_name
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime import moduledef as md
from autopilot_sync.spacetime.algebraic import AlgebraicType


class Module:
    """A module definition: tables plus reducers, collected by decorators.

    ```
    module = Module("chat")
    message = module.table("message", [("id", U64), ("text", STRING)], primary_key="id", auto_inc=("id",))

    @module.reducer(("text", STRING))
    def send(ctx: ReducerContext, text: str) -> None:
        ctx.db["message"].insert(message.row_class(0, text))
    ```
    """

    def __init__(self, name: str, version: str = "0") -> None:
        self.name = name
        self.version = version
        self.tables: dict[str, TableDef] = {}
        self.reducers: dict[str, ReducerDef] = {}
        self.start_hook: StartHook | None = None
        #: table → the SQL of its row-level security filters (`client_visibility_filter`), in declaration order
        self.visibility_filters: dict[str, tuple[str, ...]] = {}

    def table(
        self,
        name: str,
        columns: Sequence[tuple[str, AlgebraicType]],
        *,
        primary_key: str | None = None,
        unique: Iterable[Sequence[str]] = (),
        indexes: Iterable[Sequence[str]] = (),
        auto_inc: Iterable[str] = (),
        public: bool = True,
        scheduled_reducer: str | None = None,
        event: bool = False,
        defaults: Mapping[str, Any] | None = None,
    ) -> TableDef:
        """Declare a table and return its definition (whose `row_class` builds rows).

        `defaults` gives columns a default value. As in SpacetimeDB's automatic migration, a column may be added to
        the end of an existing table only with a default: rows stored before it existed are read with the default.
        """
        if name in self.tables:
            raise ValueError(f"table {name!r} declared twice")
        table = TableDef(
            name=name,
            columns=tuple(columns),
            primary_key=primary_key,
            unique=tuple(tuple(group) for group in unique),
            indexes=tuple(tuple(group) for group in indexes),
            auto_inc=tuple(auto_inc),
            public=public,
            scheduled_reducer=scheduled_reducer,
            event=event,
            defaults=tuple((defaults or {}).items()),
        )
        if scheduled_reducer is not None:
            names = table.column_names
            if "scheduled_id" not in names or "scheduled_at" not in names:
                raise ValueError(f"scheduled table {name} needs columns scheduled_id (u64) and scheduled_at")
        self.tables[name] = table
        return table

    def reducer(self, *params: tuple[str, AlgebraicType], name: str | None = None) -> Callable[[ReducerFn], ReducerFn]:
        """Declare a reducer with typed parameters; the function gets `(ctx, *args)`."""

        def register(function: ReducerFn) -> ReducerFn:
            self._add(ReducerDef(name or function.__name__, at.product(*params), function))
            return function

        return register

    def lifecycle(self, hook: Lifecycle, name: str) -> Callable[[ReducerFn], ReducerFn]:
        """Declare a lifecycle reducer (`init`, `client_connected`, `client_disconnected`)."""

        def register(function: ReducerFn) -> ReducerFn:
            if any(r.lifecycle is hook for r in self.reducers.values()):
                raise ValueError(f"lifecycle {hook.name} declared twice")
            self._add(ReducerDef(name, at.UNIT, function, hook))
            return function

        return register

    def init(self, function: ReducerFn) -> ReducerFn:
        """Runs once, when the database is created."""
        return self.lifecycle(Lifecycle.INIT, "init")(function)

    def client_connected(self, function: ReducerFn) -> ReducerFn:
        """Runs when a client connects; raising `ReducerError` rejects the connection."""
        return self.lifecycle(Lifecycle.CLIENT_CONNECTED, "client_connected")(function)

    def client_disconnected(self, function: ReducerFn) -> ReducerFn:
        """Runs when a client disconnects, and at start for connections that died with the previous process."""
        return self.lifecycle(Lifecycle.CLIENT_DISCONNECTED, "client_disconnected")(function)

    def on_start(self, function: StartHook) -> StartHook:
        """Run `function(ctx, info)` in one transaction, as the database owner, every time the host starts.

        After recovery (and `init` on a fresh database), before any client connects. This is where a module reacts
        to what only the host knows: rows a schema migration gave default values to, or history recovery had to
        set aside (`StartInfo.history_discarded`). Not a SpacetimeDB lifecycle reducer: not in the schema, not
        callable by clients; a failure stops the start.
        """
        if self.start_hook is not None:
            raise ValueError("start hook declared twice")
        self.start_hook = function
        return function

    def client_visibility_filter(self, table: str, sql: str) -> None:
        """Declare which rows of `table` a caller may read (SpacetimeDB's `client_visibility_filter`).

        `sql` selects rows of `table` (`SELECT * FROM t WHERE ...`, or `SELECT t.* FROM t JOIN u ON ... WHERE ...`) and
        may name the caller as `:sender`. The host applies it to every read by anyone but the database owner:
        subscriptions (initial rows and every delta), WebSocket one-off queries and HTTP `/sql`. A filter sees only the
        caller's identity, never its token claims, which is what lets the same rule hold on a real SpacetimeDB. A
        table may have several filters: a row is visible when any of them admits it (SpacetimeDB ORs them; this host
        needs them all single-table or all the same join). The SQL is compiled against the tables when first used,
        and the host refuses a module whose filters do not compile when it loads it
        (`host.sql.check_visibility_filters`).
        """
        if table not in self.tables:
            raise ValueError(f"visibility filter for unknown table {table!r}")
        self.visibility_filters[table] = (*self.visibility_filters.get(table, ()), sql)

    def _add(self, reducer: ReducerDef) -> None:
        if reducer.name in self.reducers:
            raise ValueError(f"reducer {reducer.name!r} declared twice")
        self.reducers[reducer.name] = reducer

    def lifecycle_reducer(self, hook: Lifecycle) -> ReducerDef | None:
        """The reducer registered for a lifecycle hook, if any."""
        return next((r for r in self.reducers.values() if r.lifecycle is hook), None)

    # ----- schema -----

    def module_def(self) -> md.ModuleDef:
        """The module as the version-neutral definition the schema route serves (as V9 or V10)."""
        scheduled = {t.scheduled_reducer for t in self.tables.values() if t.scheduled_reducer}
        return md.ModuleDef(
            typespace=tuple(table.row_type for table in self.tables.values()),
            tables=tuple(_table_def(table, ref) for ref, table in enumerate(self.tables.values())),
            reducers=tuple(
                md.ReducerDef(
                    name=r.name,
                    params=r.params,
                    lifecycle=md.Lifecycle(r.lifecycle.value) if r.lifecycle else None,
                    client_callable=r.lifecycle is None and r.name not in scheduled,
                )
                for r in self.reducers.values()
            ),
            types=tuple(
                md.TypeDef((), row_class_name(table.name)[:-3], ref) for ref, table in enumerate(self.tables.values())
            ),
            row_level_security=tuple(sql for sqls in self.visibility_filters.values() for sql in sqls),
        )

    def schema_json(self) -> dict[str, Any]:
        """The module as `RawModuleDefV9` in SATS-JSON, the form `GET /schema?version=9` serves."""
        return md.v9.to_json(self.module_def())

    def schema_hash(self) -> str:
        """A stable digest of the schema: stored with the data so a changed module cannot misread old rows."""
        return md.schema_hash(self.module_def())


def _table_def(table: TableDef, ref: int) -> md.TableDef:
    """One table as the definition serves it: generated index, constraint, sequence and schedule names."""

    def cols(group: Sequence[str]) -> tuple[int, ...]:
        return tuple(table.column_index(c) for c in group)

    return md.TableDef(
        name=table.name,
        product_type_ref=ref,
        primary_key=cols((table.primary_key,)) if table.primary_key else (),
        indexes=tuple(
            md.IndexDef(f"{table.name}_{'_'.join(group)}_idx_btree", "_".join(group), md.IndexKind.BTREE, cols(group))
            for group in table.all_indexes()
        ),
        constraints=tuple(
            md.UniqueConstraintDef(f"{table.name}_{'_'.join(group)}_key", cols(group)) for group in table.unique_keys()
        ),
        sequences=tuple(
            md.SequenceDef(f"{table.name}_{column}_seq", table.column_index(column)) for column in table.auto_inc
        ),
        schedule=(
            md.ScheduleDef(f"{table.name}_sched", table.scheduled_reducer, table.column_index("scheduled_at"))
            if table.scheduled_reducer
            else None
        ),
        public=table.public,
        defaults=tuple(_default(table, column, value) for column, value in table.defaults),
        is_event=table.event,
    )


def _default(table: TableDef, column: str, value: Any) -> md.ColumnDefault:
    """The column's default as BSATN bytes (`ColumnDefaultValue` in V9's misc exports, `default_values` in V10)."""
    position = table.column_index(column)
    return md.ColumnDefault(position, bsatn.codec(table.columns[position][1]).encode(value))
