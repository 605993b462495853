"""`RawModuleDefV10`: what `GET /schema?version=10` serves and how TypeScript modules describe themselves.

Follows `crates/lib/src/db/raw_def/v10.rs` and SpacetimeDB's `From<ModuleDef> for RawModuleDefV10`
(`crates/schema/src/def.rs`) when writing: a list of sections in the server's order (Typespace, Types, Tables,
Reducers, Procedures, Views, Schedules, LifeCycleReducers, RowLevelSecurity, then ExplicitNames, always), empty
sections left out, schedules and lifecycle bindings in their own sections, column defaults and the event flag on the
table, every table and function named in `ExplicitNames` (source name → canonical name).

When reading, names go through `ExplicitNames`; a name without an entry follows the module's
`CaseConversionPolicy` (default `SnakeCase`, as in `validate/v10.rs`), which also converts the typespace as SpacetimeDB
does: product field names (table columns) to snake_case, sum variant names to camelCase, special types untouched;
reducer parameters keep their names; generated index names are rebuilt from the canonical table and column names,
explicit index names (`ExplicitNames`) are used as given. Limits, said plainly: named types keep their names as
written, and the sections this host has no use for (HTTP handlers and routes, view primary keys, submodules) are read
and dropped, as SpacetimeDB's own V9 conversion drops submodules.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn, sats_json
from autopilot_sync.spacetime.errors import DecodeError
from autopilot_sync.spacetime.moduledef import raw
from autopilot_sync.spacetime.moduledef.model import (
    ColumnDefault,
    IndexDef,
    Lifecycle,
    ModuleDef,
    ModuleDefError,
    ProcedureDef,
    ReducerDef,
    ScheduleDef,
    TableDef,
    TypeDef,
    ViewDef,
)
from autopilot_sync.spacetime.moduledef.v9 import (
    constraint_from_value,
    constraint_to_value,
    index_from_value,
    index_to_value,
    lifecycle_from_value,
    lifecycle_value,
    sequence_from_value,
    sequence_to_value,
    table_kind_values,
    unwrap_index_algorithms,
)
from autopilot_sync.spacetime.moduledef.validate import validate
from autopilot_sync.spacetime.values import SumValue

_SECTIONS = tuple(variant.name for variant in raw.SECTION_V10.variants)
_TAG = {name: tag for tag, name in enumerate(_SECTIONS)}
_PRIVATE, _CLIENT_CALLABLE = 0, 1
_EXPLICIT_TABLE, _EXPLICIT_FUNCTION, _EXPLICIT_INDEX = 0, 1, 2
_GENERATED_INDEX = re.compile(r"_idx_(btree|hash|direct)$")
_CASE_NONE = 0
_SYSTEM, _PUBLIC = 0, 0


def _visibility(callable_: bool) -> SumValue:
    return SumValue(_CLIENT_CALLABLE if callable_ else _PRIVATE, ())


def to_value(definition: ModuleDef) -> tuple[list[SumValue]]:
    """The definition as a SATS value of `raw.MODULE_V10`, sections in the order SpacetimeDB writes them."""
    sections: list[SumValue] = []

    def section(name: str, items: list[Any]) -> None:
        if items:
            sections.append(SumValue(_TAG[name], items))

    sections.append(SumValue(_TAG["Typespace"], ([raw.type_to_value(ty) for ty in definition.typespace],)))
    section("Types", [((list(t.scope), t.name), t.ty, t.custom_ordering) for t in definition.types])
    tables = []
    for table in definition.tables:
        table_type, access = table_kind_values(table)
        tables.append(
            (
                table.name,
                table.product_type_ref,
                list(table.primary_key),
                [index_to_value(index) for index in table.indexes],
                [constraint_to_value(constraint) for constraint in table.constraints],
                [sequence_to_value(sequence) for sequence in table.sequences],
                table_type,
                access,
                [(default.column, default.value) for default in table.defaults],
                table.is_event,
            )
        )
    section("Tables", tables)
    section(
        "Reducers",
        [
            (
                r.name,
                raw.product_to_value(r.params),
                _visibility(r.client_callable),
                raw.type_to_value(r.ok_return_type),
                raw.type_to_value(r.err_return_type),
            )
            for r in definition.reducers
        ],
    )
    section(
        "Procedures",
        [
            (p.name, raw.product_to_value(p.params), raw.type_to_value(p.return_type), _visibility(p.client_callable))
            for p in definition.procedures
        ],
    )
    section(
        "Views",
        [
            (
                v.name,
                v.index,
                v.is_public,
                v.is_anonymous,
                raw.product_to_value(v.params),
                raw.type_to_value(v.return_type),
            )
            for v in definition.views
        ],
    )
    section(
        "Schedules",
        [
            (t.schedule.name, t.name, t.schedule.at_column, t.schedule.reducer)
            for t in definition.tables
            if t.schedule is not None
        ],
    )
    bound = {r.lifecycle: r.name for r in definition.reducers if r.lifecycle is not None}
    section("LifeCycleReducers", [(lifecycle_value(hook), bound[hook]) for hook in Lifecycle if hook in bound])
    section("RowLevelSecurity", [(sql,) for sql in definition.row_level_security])
    names = [SumValue(_EXPLICIT_TABLE, (t.name, t.name)) for t in definition.tables]
    names += [
        SumValue(_EXPLICIT_FUNCTION, (name, name))
        for name in (
            *(r.name for r in definition.reducers),
            *(p.name for p in definition.procedures),
            *(v.name for v in definition.views),
        )
    ]
    sections.append(SumValue(_TAG["ExplicitNames"], (names,)))
    return (sections,)


def snake_case(name: str) -> str:
    """`CaseConversionPolicy::SnakeCase` for a name without an explicit one: `sendMessage` → `send_message`.

    Word boundaries are separators (`_`, `-`, space), lower-to-upper (`aB`) and acronym ends (`HTTPServer`).
    """
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    return "_".join(word.lower() for word in re.split(r"[\s_\-]+", spaced) if word)


def camel_case(name: str) -> str:
    """An enum variant name under `SnakeCase` (SpacetimeDB makes variants lower camel case): `RedApple` → `redApple`."""
    words = snake_case(name).split("_")
    return words[0] + "".join(word[:1].upper() + word[1:] for word in words[1:])


#: Sums SpacetimeDB leaves alone (`SumType::is_special`): their variant names are part of the wire contract.
_SPECIAL_SUMS = ({"some", "none"}, {"Interval", "Time"}, {"ok", "err"})


def _is_special(ty: at.AlgebraicType) -> bool:
    """SpacetimeDB's special types (Identity, ConnectionId, Timestamp, ... as a one-field `__tag__` product; Option,
    ScheduleAt, Result as sums): `typespace_case_conversion` skips them, names and contents."""
    if isinstance(ty, at.ProductType):
        return len(ty.elements) == 1 and (ty.elements[0].name or "").startswith("__")
    if isinstance(ty, at.SumType):
        return {v.name for v in ty.variants} in _SPECIAL_SUMS
    return False


def _convert_names(ty: at.AlgebraicType) -> at.AlgebraicType:
    """The typespace under `CaseConversionPolicy::SnakeCase`, as `validate/v9.rs`'s `typespace_case_conversion`:
    product field names to snake_case, sum variant names to camelCase, special types untouched, recursively."""
    if _is_special(ty):
        return ty
    if isinstance(ty, at.ProductType):
        return at.ProductType(
            tuple(
                at.ProductElement(snake_case(e.name) if e.name else e.name, _convert_names(e.type)) for e in ty.elements
            )
        )
    if isinstance(ty, at.SumType):
        return at.SumType(
            tuple(at.SumVariant(camel_case(v.name) if v.name else v.name, _convert_names(v.type)) for v in ty.variants)
        )
    if isinstance(ty, at.ArrayType):
        return at.ArrayType(_convert_names(ty.element))
    return ty


def from_value(value: Any) -> ModuleDef:
    """The definition a SATS value of `raw.MODULE_V10` describes (validated)."""
    (sections,) = value
    found: dict[str, Any] = {}
    for item in sections:
        found.setdefault(_SECTIONS[item.tag], item.value)  # the first of each kind, as v10.rs's accessors read
    policy = found.get("CaseConversionPolicy")
    convert = policy is None or policy.tag != _CASE_NONE
    explicit_tables: dict[str, str] = {}
    explicit_functions: dict[str, str] = {}
    explicit_indexes: dict[str, str] = {}
    for entry in (found.get("ExplicitNames") or ([],))[0]:
        if entry.tag == _EXPLICIT_TABLE:
            explicit_tables[entry.value[0]] = entry.value[1]
        elif entry.tag == _EXPLICIT_FUNCTION:
            explicit_functions[entry.value[0]] = entry.value[1]
        elif entry.tag == _EXPLICIT_INDEX:
            explicit_indexes[entry.value[0]] = entry.value[1]
    typespace = tuple(
        _convert_names(raw.type_from_value(ty)) if convert else raw.type_from_value(ty)
        for ty in found.get("Typespace", ([],))[0]
    )

    def index_def(table: str, ref: int, value: Any) -> IndexDef:
        """An index named as SpacetimeDB names it: explicitly, or generated from the canonical table and column names
        (`validate/v10.rs`) when the source name is a generated one (`<table>_<columns>_idx_<algorithm>`)."""
        index = index_from_value(value)
        source = index.name or ""
        if source in explicit_indexes:
            return replace(index, name=explicit_indexes[source])
        if not convert or not _GENERATED_INDEX.search(source) or not 0 <= ref < len(typespace):
            return index
        row = typespace[ref]
        if not isinstance(row, at.ProductType) or any(c >= len(row.elements) for c in index.columns):
            return index
        columns = "_".join(row.elements[c].name or str(c) for c in index.columns)
        return replace(index, name=f"{table}_{columns}_idx_{index.kind.value.lower()}")

    def table_name(source: str) -> str:
        return explicit_tables.get(source) or (snake_case(source) if convert else source)

    def function_name(source: str) -> str:
        return explicit_functions.get(source) or (snake_case(source) if convert else source)

    schedules: dict[str, ScheduleDef] = {}
    for source, table, column, function in found.get("Schedules", []):
        schedules[table_name(table)] = ScheduleDef(source, function_name(function), column)
    lifecycles = {function_name(name): lifecycle_from_value(spec) for spec, name in found.get("LifeCycleReducers", [])}
    tables = []
    for source, ref, primary_key, indexes, constraints, sequences, table_type, access, defaults, event in found.get(
        "Tables", []
    ):
        name = table_name(source)
        tables.append(
            TableDef(
                name=name,
                product_type_ref=ref,
                primary_key=tuple(primary_key),
                indexes=tuple(index_def(name, ref, i) for i in indexes),
                constraints=tuple(constraint_from_value(c) for c in constraints),
                sequences=tuple(sequence_from_value(s) for s in sequences),
                schedule=schedules.pop(name, None),
                system=table_type.tag == _SYSTEM,
                public=access.tag == _PUBLIC,
                defaults=tuple(ColumnDefault(column, bytes(data)) for column, data in defaults),
                is_event=event,
            )
        )
    if schedules:
        raise ModuleDefError(f"schedule for unknown table {next(iter(schedules))!r}")
    reducers = tuple(
        ReducerDef(
            name=function_name(source),
            params=raw.product_from_value(params),
            lifecycle=lifecycles.pop(function_name(source), None),
            client_callable=visibility.tag == _CLIENT_CALLABLE,
            ok_return_type=raw.type_from_value(ok),
            err_return_type=raw.type_from_value(err),
        )
        for source, params, visibility, ok, err in found.get("Reducers", [])
    )
    if lifecycles:
        raise ModuleDefError(f"lifecycle hook for unknown reducer {next(iter(lifecycles))!r}")
    definition = ModuleDef(
        typespace=typespace,
        tables=tuple(tables),
        reducers=reducers,
        types=tuple(
            TypeDef(tuple(scope), name, ty, ordering) for (scope, name), ty, ordering in found.get("Types", [])
        ),
        row_level_security=tuple(sql for (sql,) in found.get("RowLevelSecurity", [])),
        procedures=tuple(
            ProcedureDef(
                function_name(source),
                raw.product_from_value(params),
                raw.type_from_value(returns),
                visibility.tag == _CLIENT_CALLABLE,
            )
            for source, params, returns, visibility in found.get("Procedures", [])
        ),
        views=tuple(
            ViewDef(
                function_name(source),
                index,
                public,
                anonymous,
                raw.product_from_value(params),
                raw.type_from_value(returns),
            )
            for source, index, public, anonymous, params, returns in found.get("Views", [])
        ),
    )
    validate(definition)
    return definition


def to_json(definition: ModuleDef) -> dict[str, Any]:
    """`RawModuleDefV10` SATS-JSON, what `GET /schema?version=10` serves."""
    document: dict[str, Any] = sats_json.to_json(raw.MODULE_V10, to_value(definition), raw.META_TYPESPACE)
    return document


def from_json(document: Any) -> ModuleDef:
    """Read `RawModuleDefV10` SATS-JSON; `ModuleDefError` says what is wrong."""
    if isinstance(document, dict) and isinstance(document.get("sections"), list):
        document = {"sections": [_unwrap_section(section) for section in document["sections"]]}
    try:
        value = sats_json.from_json(raw.MODULE_V10, document, raw.META_TYPESPACE)
    except sats_json.SatsJsonError as exc:
        raise ModuleDefError(f"not a RawModuleDefV10 document: {exc}") from None
    return from_value(value)


def _unwrap_section(section: Any) -> Any:
    if isinstance(section, dict) and set(section) == {"Tables"}:
        return {"Tables": unwrap_index_algorithms(section["Tables"])}
    return section


def to_bsatn(definition: ModuleDef) -> bytes:
    """`RawModuleDefV10` as BSATN (the bare struct)."""
    return bsatn.encode(raw.MODULE_V10, to_value(definition), raw.META_TYPESPACE)


def from_bsatn(data: bytes) -> ModuleDef:
    """Read a BSATN `RawModuleDefV10` (the bare struct); `ModuleDefError` on bad bytes."""
    try:
        value = bsatn.decode(raw.MODULE_V10, data, raw.META_TYPESPACE)
    except DecodeError as exc:
        raise ModuleDefError(f"not a BSATN RawModuleDefV10: {exc}") from None
    return from_value(value)
