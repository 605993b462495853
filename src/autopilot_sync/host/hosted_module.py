"""The module seam: the one interface `HostEngine` runs a module through, whatever language the module is in.

A module describes itself (`definition()`, the version-neutral `RawModuleDef`) and answers reducer calls with their
BSATN arguments (`call_reducer`), as a SpacetimeDB module answers `__describe_module__` and `__call_reducer__`. The
engine derives every table, index, constraint, sequence, schedule and lifecycle reducer from the definition and hands
the module the raw argument bytes; the module decodes them once and refuses bytes that do not decode with
`BadArgumentsError`, which the engine answers as SpacetimeDB answers undecodable arguments (the engine decoded them a
second time just to refuse bad ones before: ~3% of the host's time per unbatched call, docs/performance.md).
A JavaScript runner implements the same protocol; `PythonModule` adapts an authored `bindings.Module`.

It lives in `host/`, not `bindings/`: module authors never see it (they write against `bindings`), and what it
exposes (the definition, raw argument bytes, the host's start information) is the host's side of the contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from autopilot_sync.bindings.context import ReducerContext
from autopilot_sync.bindings.module import Module
from autopilot_sync.bindings.reducers import ReducerDef, StartInfo
from autopilot_sync.bindings.tables import TableDef
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime import moduledef as md
from autopilot_sync.spacetime.errors import DecodeError

#: File name endings that select a built JavaScript module (anything else is a dotted Python path).
JS_MODULE_SUFFIXES = (".js", ".mjs")


def is_js_module_path(path: str) -> bool:
    """Whether a `--module` value names a built JavaScript module file rather than a Python import path (here, not
    in `js_module.py`, so deciding does not load the JS layer)."""
    return path.endswith(JS_MODULE_SUFFIXES)


class BadArgumentsError(Exception):
    """A reducer's BSATN arguments do not decode against its parameters: the call is refused, never run.

    Raised by `HostedModule.call_reducer` before the reducer's code runs; the engine rolls back (nothing was written)
    and answers `CallStatus.BAD_ARGUMENTS` with this text, offset 0, as it answers an unknown reducer.
    """


class HostedModule(Protocol):
    """What the engine needs of a module: its name, its definition, reducer calls, and an optional start hook."""

    @property
    def name(self) -> str:
        """The module's name (recorded with the data in `meta.json`)."""
        ...

    def definition(self) -> md.ModuleDef:
        """The module's own description; the engine derives tables, reducers and schedules from it only."""
        ...

    def visibility_filters(self) -> Mapping[str, tuple[str, ...]]:
        """Each table's row-level-security SQL by table name: the definition's `row_level_security` grouped by the
        table each rule selects from, in declaration order (a row is visible when any of its table's rules admits it).
        """
        ...

    def call_reducer(self, ctx: ReducerContext, reducer: str, args: bytes) -> None:
        """Run `reducer` with its BSATN arguments inside the caller's transaction.

        Raises `BadArgumentsError` when `args` do not decode against the reducer's parameters (trailing bytes are
        ignored, as SpacetimeDB does), before any of the reducer's code runs; `bindings.ReducerError` to fail the
        call with a user-facing message (SpacetimeDB's `SenderError`); any other exception is a panic. In every case
        the engine rolls the transaction back.
        """
        ...

    @property
    def has_start_hook(self) -> bool:
        """Whether `on_start` does anything (the engine then runs it in its own transaction at every start)."""
        ...

    def on_start(self, ctx: ReducerContext, info: StartInfo) -> None:
        """React to this start (migrated rows, discarded history), as the database owner, before any client."""
        ...


class PythonModule:
    """A `bindings.Module` behind the seam: the authored Python module, described and called as any module is."""

    def __init__(self, module: Module) -> None:
        self.module = module
        self._definition = module.module_def()
        self._codecs: dict[str, tuple[ReducerDef, bsatn.Codec]] = {}

    @property
    def name(self) -> str:
        """The authored module's name."""
        return self.module.name

    def definition(self) -> md.ModuleDef:
        """The definition the module declares (computed once: a module is immutable once hosted)."""
        return self._definition

    def visibility_filters(self) -> Mapping[str, tuple[str, ...]]:
        """The module's `client_visibility_filter` declarations."""
        return self.module.visibility_filters

    def call_reducer(self, ctx: ReducerContext, reducer: str, args: bytes) -> None:
        """Decode the arguments with the reducer's parameters and call its function (trailing bytes ignored).

        Bytes after the arguments are ignored, as SpacetimeDB does: `FunctionArgs::_into_tuple` in
        `crates/core/src/host/mod.rs` deserializes the parameters from the front and never checks for the end.
        """
        cached = self._codecs.get(reducer)
        if cached is None:
            found = self.module.reducers[reducer]
            cached = self._codecs[reducer] = (found, bsatn.codec(found.params))
        function_def, codec = cached
        try:
            values = codec.decode_prefix(args, 0)[0] if function_def.params.elements else ()
        except DecodeError as exc:
            raise BadArgumentsError(f"invalid arguments for reducer {reducer}: {exc}") from None
        function_def.function(ctx, *values)

    @property
    def has_start_hook(self) -> bool:
        """Whether the module declared `on_start`."""
        return self.module.start_hook is not None

    def on_start(self, ctx: ReducerContext, info: StartInfo) -> None:
        """Call the module's start hook, if it has one."""
        if self.module.start_hook is not None:
            self.module.start_hook(ctx, info)


def hosted(module: HostedModule | Module) -> HostedModule:
    """The module as the engine runs it: an authored `bindings.Module` is wrapped in `PythonModule`."""
    return PythonModule(module) if isinstance(module, Module) else module


def tables_from_definition(definition: md.ModuleDef) -> tuple[TableDef, ...]:
    """The host's table layouts, derived from a module's definition alone (not from any Python declaration).

    Column names come from the table's row type in the typespace; keys, indexes, sequences, the schedule and column
    defaults from the table's definition, in the order the definition lists them.
    """
    return tuple(_table(definition, table) for table in definition.tables)


def _table(definition: md.ModuleDef, table: md.TableDef) -> TableDef:
    row_type = md.resolve(at.RefType(table.product_type_ref), definition.typespace)
    if not isinstance(row_type, at.ProductType):
        raise md.ModuleDefError(f"table {table.name}: row type {table.product_type_ref} is not a product")
    # Named types are references into the typespace (the TypeScript library emits every named product or sum as
    # one): the host's tables hold them resolved, so codecs, SQL and subscriptions never see a `Ref`.
    columns = tuple(
        (element.name or str(i), md.resolve_deep(element.type, definition.typespace))
        for i, element in enumerate(row_type.elements)
    )
    names = [name for name, _ in columns]

    def group(positions: tuple[int, ...]) -> tuple[str, ...]:
        return tuple(names[p] for p in positions)

    primary_key = names[table.primary_key[0]] if len(table.primary_key) == 1 else None
    pk_group = (primary_key,) if primary_key else None
    defaults: list[tuple[str, Any]] = []
    for default in table.defaults:
        codec = bsatn.codec(columns[default.column][1])
        defaults.append((names[default.column], codec.decode_prefix(default.value, 0)[0]))
    return TableDef(
        table.name,
        columns,
        primary_key=primary_key,
        unique=tuple(group(c.columns) for c in table.constraints if group(c.columns) != pk_group),
        indexes=tuple(group(i.columns) for i in table.indexes),
        auto_inc=tuple(names[s.column] for s in table.sequences),
        public=table.public,
        scheduled_reducer=table.schedule.reducer if table.schedule else None,
        schedule_column=names[table.schedule.at_column] if table.schedule else "scheduled_at",
        event=table.is_event,
        defaults=tuple(defaults),
    )
