"""`RawModuleDefV9`: the form `GET /v1/database/:name/schema?version=9` serves, and the one the schema hash covers.

Follows `crates/lib/src/db/raw_def/v9.rs` and SpacetimeDB's `From<ModuleDef> for RawModuleDefV9`
(`crates/schema/src/def.rs`): column defaults, procedures and views travel as `misc_exports` (in that order), the
event-table flag and reducer visibility do not exist in V9 (a reader derives visibility: lifecycle and scheduled
reducers are private). The JSON is SpacetimeDB's exactly (`SerdeWrapper(RawModuleDefV9)` in the `schema` handler
of `crates/client-api/src/routes/database.rs`); the schema hash is taken over one older variant of it, see
`legacy_hash_form`.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from autopilot_sync.spacetime import bsatn, sats_json
from autopilot_sync.spacetime.errors import DecodeError
from autopilot_sync.spacetime.moduledef import raw
from autopilot_sync.spacetime.moduledef.model import (
    ColumnDefault,
    IndexDef,
    IndexKind,
    Lifecycle,
    ModuleDef,
    ModuleDefError,
    ProcedureDef,
    ReducerDef,
    ScheduleDef,
    SequenceDef,
    TableDef,
    TypeDef,
    UniqueConstraintDef,
    ViewDef,
)
from autopilot_sync.spacetime.moduledef.validate import validate
from autopilot_sync.spacetime.values import SumValue

_LIFECYCLES = tuple(Lifecycle)
_INDEX_KINDS = tuple(IndexKind)
_COLUMN_DEFAULT, _PROCEDURE, _VIEW = 0, 1, 2
_SYSTEM, _USER = 0, 1
_PUBLIC, _PRIVATE = 0, 1
_UNIQUE = 0


# ----- shared pieces (V10 reuses them) -----


def index_to_value(index: IndexDef) -> tuple[Any, ...]:
    """`RawIndexDefV9` / `RawIndexDefV10` (same layout): name, accessor name, algorithm."""
    tag = _INDEX_KINDS.index(index.kind)
    payload = index.columns[0] if index.kind is IndexKind.DIRECT else list(index.columns)
    return (index.name, index.accessor_name, SumValue(tag, payload))


def index_from_value(value: Any) -> IndexDef:
    """Inverse of `index_to_value`."""
    name, accessor, algorithm = value
    kind = _INDEX_KINDS[algorithm.tag]
    columns = (algorithm.value,) if kind is IndexKind.DIRECT else tuple(algorithm.value)
    return IndexDef(name, accessor, kind, columns)


_WRAPPED = {"BTree": "columns", "Hash": "columns", "Direct": "column"}


def legacy_hash_form(document: Mapping[str, Any]) -> dict[str, Any]:
    """The V9 document as the schema hash covers it: index algorithms wrapped, `{"BTree": {"columns": [0]}}`.

    Earlier releases of this host served V9 with the wrapped payload; SpacetimeDB (and now this host) writes the
    bare one (`{"BTree": [0]}`, see `raw.INDEX_ALGORITHM`). Data directories (`meta.json`), snapshots and release
    ledgers store the digest of the wrapped form, so the hash keeps being taken over it: a module hashes the same
    whichever form its document arrives in. Returns a copy; shapes it does not recognise are left as they are.
    """
    tables = document.get("tables")
    if not isinstance(tables, list):
        return dict(document)
    return {**document, "tables": [_map_indexes(table, _wrap_index) for table in tables]}


def _map_indexes(table: Any, convert: Callable[[Any], Any]) -> Any:
    indexes = table.get("indexes") if isinstance(table, dict) else None
    if not isinstance(indexes, list):
        return table
    return {**table, "indexes": [convert(index) for index in indexes]}


def _wrap_index(index: Any) -> Any:
    algorithm = index.get("algorithm") if isinstance(index, dict) else None
    if isinstance(algorithm, dict) and len(algorithm) == 1:
        ((kind, payload),) = algorithm.items()
        field = _WRAPPED.get(kind)
        if field is not None and not isinstance(payload, dict):
            return {**index, "algorithm": {kind: {field: payload}}}
    return index


def unwrap_index_algorithms(tables: Any) -> Any:
    """Accept both forms when reading: `{"BTree": [0]}` (SpacetimeDB's) and `{"BTree": {"columns": [0]}}` (this
    host's V9 in earlier releases, still in older `meta.json` files).

    Returns the tables with wrapped payloads unwrapped (copies; the input is not changed). Anything that is not in
    one of the two shapes is left as it is, for the SATS-JSON reader to report with its path.
    """
    if not isinstance(tables, list):
        return tables
    return [_map_indexes(table, _unwrap_index) for table in tables]


def _unwrap_index(index: Any) -> Any:
    algorithm = index.get("algorithm") if isinstance(index, dict) else None
    if isinstance(algorithm, dict) and len(algorithm) == 1:
        ((kind, payload),) = algorithm.items()
        field = _WRAPPED.get(kind)
        if field is not None and isinstance(payload, dict) and set(payload) == {field}:
            return {**index, "algorithm": {kind: payload[field]}}
    return index


def constraint_to_value(constraint: UniqueConstraintDef) -> tuple[Any, ...]:
    """`RawConstraintDefV9` / `V10`: name, `Unique { columns }`."""
    return (constraint.name, SumValue(_UNIQUE, (list(constraint.columns),)))


def constraint_from_value(value: Any) -> UniqueConstraintDef:
    """Inverse of `constraint_to_value`."""
    name, data = value
    return UniqueConstraintDef(name, tuple(data.value[0]))


def sequence_to_value(sequence: SequenceDef) -> tuple[Any, ...]:
    """`RawSequenceDefV9` / `V10`."""
    return (sequence.name, sequence.column, sequence.start, sequence.min_value, sequence.max_value, sequence.increment)


def sequence_from_value(value: Any) -> SequenceDef:
    """Inverse of `sequence_to_value`."""
    return SequenceDef(*value)


def table_kind_values(table: TableDef) -> tuple[SumValue, SumValue]:
    """`TableType` and `TableAccess`."""
    return SumValue(_SYSTEM if table.system else _USER, ()), SumValue(_PUBLIC if table.public else _PRIVATE, ())


def lifecycle_value(lifecycle: Lifecycle) -> SumValue:
    """`Lifecycle` as a SATS value."""
    return SumValue(_LIFECYCLES.index(lifecycle), ())


def lifecycle_from_value(value: Any) -> Lifecycle:
    """Inverse of `lifecycle_value`."""
    lifecycle: Lifecycle = _LIFECYCLES[value.tag]
    return lifecycle


def scheduled_reducers(tables: tuple[TableDef, ...]) -> frozenset[str]:
    """Reducers some table schedules (SpacetimeDB makes them private)."""
    return frozenset(table.schedule.reducer for table in tables if table.schedule is not None)


# ----- the document -----


def to_value(definition: ModuleDef) -> tuple[Any, ...]:
    """The definition as a SATS value of `raw.MODULE_V9`."""
    tables = []
    defaults: list[SumValue] = []
    for table in definition.tables:
        table_type, access = table_kind_values(table)
        schedule = table.schedule
        tables.append(
            (
                table.name,
                table.product_type_ref,
                list(table.primary_key),
                [index_to_value(index) for index in table.indexes],
                [constraint_to_value(constraint) for constraint in table.constraints],
                [sequence_to_value(sequence) for sequence in table.sequences],
                None if schedule is None else (schedule.name, schedule.reducer, schedule.at_column),
                table_type,
                access,
            )
        )
        defaults.extend(
            SumValue(_COLUMN_DEFAULT, (table.name, default.column, default.value)) for default in table.defaults
        )
    reducers = [
        (
            reducer.name,
            raw.product_to_value(reducer.params),
            None if reducer.lifecycle is None else lifecycle_value(reducer.lifecycle),
        )
        for reducer in definition.reducers
    ]
    misc = [
        *defaults,
        *(
            SumValue(_PROCEDURE, (p.name, raw.product_to_value(p.params), raw.type_to_value(p.return_type)))
            for p in definition.procedures
        ),
        *(
            SumValue(
                _VIEW,
                (
                    v.name,
                    v.index,
                    v.is_public,
                    v.is_anonymous,
                    raw.product_to_value(v.params),
                    raw.type_to_value(v.return_type),
                ),
            )
            for v in definition.views
        ),
    ]
    return (
        ([raw.type_to_value(ty) for ty in definition.typespace],),
        tables,
        reducers,
        [((list(t.scope), t.name), t.ty, t.custom_ordering) for t in definition.types],
        misc,
        [(sql,) for sql in definition.row_level_security],
    )


def from_value(value: Any) -> ModuleDef:
    """The definition a SATS value of `raw.MODULE_V9` describes (validated)."""
    (types,), raw_tables, raw_reducers, raw_types, misc, rls = value
    defaults: dict[str, list[ColumnDefault]] = {}
    procedures: list[ProcedureDef] = []
    views: list[ViewDef] = []
    for export in misc:
        if export.tag == _COLUMN_DEFAULT:
            table_name, column, data = export.value
            defaults.setdefault(table_name, []).append(ColumnDefault(column, bytes(data)))
        elif export.tag == _PROCEDURE:
            name, params, returns = export.value
            procedures.append(ProcedureDef(name, raw.product_from_value(params), raw.type_from_value(returns)))
        else:
            name, index, public, anonymous, params, returns = export.value
            views.append(
                ViewDef(name, index, public, anonymous, raw.product_from_value(params), raw.type_from_value(returns))
            )
    tables = tuple(
        TableDef(
            name=name,
            product_type_ref=ref,
            primary_key=tuple(primary_key),
            indexes=tuple(index_from_value(i) for i in indexes),
            constraints=tuple(constraint_from_value(c) for c in constraints),
            sequences=tuple(sequence_from_value(s) for s in sequences),
            schedule=None if schedule is None else ScheduleDef(*schedule),
            system=table_type.tag == _SYSTEM,
            public=access.tag == _PUBLIC,
            defaults=tuple(defaults.pop(name, ())),
        )
        for name, ref, primary_key, indexes, constraints, sequences, schedule, table_type, access in raw_tables
    )
    if defaults:
        raise ModuleDefError(f"column default for unknown table {next(iter(defaults))!r}")
    scheduled = scheduled_reducers(tables)
    reducers = tuple(
        ReducerDef(
            name=name,
            params=raw.product_from_value(params),
            lifecycle=None if lifecycle is None else lifecycle_from_value(lifecycle),
            client_callable=lifecycle is None and name not in scheduled,
        )
        for name, params, lifecycle in raw_reducers
    )
    definition = ModuleDef(
        typespace=tuple(raw.type_from_value(ty) for ty in types),
        tables=tables,
        reducers=reducers,
        types=tuple(TypeDef(tuple(scope), name, ty, ordering) for (scope, name), ty, ordering in raw_types),
        row_level_security=tuple(sql for (sql,) in rls),
        procedures=tuple(procedures),
        views=tuple(views),
    )
    validate(definition)
    return definition


def to_json(definition: ModuleDef) -> dict[str, Any]:
    """`RawModuleDefV9` SATS-JSON, exactly what `GET /schema?version=9` serves."""
    document: dict[str, Any] = sats_json.to_json(raw.MODULE_V9, to_value(definition), raw.META_TYPESPACE)
    return document


def from_json(document: Any) -> ModuleDef:
    """Read `RawModuleDefV9` SATS-JSON (as this host or SpacetimeDB serves it); `ModuleDefError` says what is wrong."""
    if isinstance(document, dict):
        document = {**document, "tables": unwrap_index_algorithms(document.get("tables"))}
    try:
        value = sats_json.from_json(raw.MODULE_V9, document, raw.META_TYPESPACE)
    except sats_json.SatsJsonError as exc:
        raise ModuleDefError(f"not a RawModuleDefV9 document: {exc}") from None
    return from_value(value)


def to_bsatn(definition: ModuleDef) -> bytes:
    """`RawModuleDefV9` as BSATN (the bare struct, not the `RawModuleDef` enum)."""
    return bsatn.encode(raw.MODULE_V9, to_value(definition), raw.META_TYPESPACE)


def from_bsatn(data: bytes) -> ModuleDef:
    """Read a BSATN `RawModuleDefV9` (the bare struct); `ModuleDefError` on bad bytes."""
    try:
        value = bsatn.decode(raw.MODULE_V9, data, raw.META_TYPESPACE)
    except DecodeError as exc:
        raise ModuleDefError(f"not a BSATN RawModuleDefV9: {exc}") from None
    return from_value(value)


def schema_hash(definition: ModuleDef | Mapping[str, Any]) -> str:
    """sha256 of the canonical V9 JSON in `legacy_hash_form`: the digest stored with the data (and in ledgers).

    V9 on purpose, and unchanged since data directories first stored it: a module read from V10 hashes the same as
    when read from V9, and a V9 document hashes the same with either index-algorithm form. A mapping is taken as a
    V9 document already (what a host served or `meta.json` kept).
    """
    if isinstance(definition, ModuleDef):
        return _definition_hash(definition)
    return _document_hash(definition)


@functools.lru_cache(maxsize=16)
def _definition_hash(definition: ModuleDef) -> str:
    """Cached per (frozen, hashable) definition: the host hashes its module at every snapshot, on the event loop."""
    return _document_hash(to_json(definition))


def _document_hash(document: Mapping[str, Any]) -> str:
    canonical = json.dumps(legacy_hash_form(document), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
