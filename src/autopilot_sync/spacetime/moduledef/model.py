"""The module definition, version-neutral: what a module is, whichever `RawModuleDef` version described it.

Mirrors the validated `ModuleDef` of SpacetimeDB's `crates/schema/src/def.rs` in the parts this project uses:
a typespace, tables (with their indexes, constraints, sequences, schedule and column defaults), reducers,
procedures, views, named types and row-level-security filters. `v9.py` and `v10.py` read and write the two wire
forms (`crates/lib/src/db/raw_def/v9.rs`, `v10.rs`); everything else in the project (the host's schema route, the
SDK, the code generator, the upgrade check) works on these values, so it never cares which version it was given.

Frozen dataclasses of tuples: definitions compare by value, which is what the round-trip tests rely on.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime.algebraic import AlgebraicType, ProductType, RefType

#: How many `Ref` hops a type may take before it must reach a non-reference (a cycle of refs never does).
MAX_REF_HOPS = 64


class ModuleDefError(ValueError):
    """A document or definition that is not a well-formed module definition; the message says where and why."""


class Lifecycle(enum.Enum):
    """Lifecycle hooks a reducer can be bound to; the value is the SATS variant name (`Lifecycle` in v9.rs)."""

    INIT = "Init"
    ON_CONNECT = "OnConnect"
    ON_DISCONNECT = "OnDisconnect"


class IndexKind(enum.Enum):
    """`RawIndexAlgorithm` variants (v9.rs): the value is the variant name."""

    BTREE = "BTree"
    HASH = "Hash"
    DIRECT = "Direct"


@dataclass(frozen=True, slots=True)
class IndexDef:
    """An index over columns (by position); `Direct` indexes have exactly one column."""

    name: str | None
    accessor_name: str | None
    kind: IndexKind
    columns: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class UniqueConstraintDef:
    """A unique constraint over columns (by position): `RawConstraintDataV9::Unique`."""

    name: str | None
    columns: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SequenceDef:
    """An auto-increment sequence on one column."""

    name: str | None
    column: int
    start: int | None = None
    min_value: int | None = None
    max_value: int | None = None
    increment: int = 1


@dataclass(frozen=True, slots=True)
class ScheduleDef:
    """A scheduled table: which reducer its rows call and which column holds the `ScheduleAt`."""

    name: str | None
    reducer: str
    at_column: int


@dataclass(frozen=True, slots=True)
class ColumnDefault:
    """A column's default value as BSATN bytes (`#[default]`): what rows stored before the column existed get."""

    column: int
    value: bytes


@dataclass(frozen=True, slots=True)
class TableDef:
    """A table: its row type (a reference into the typespace), keys, indexes and visibility."""

    name: str
    product_type_ref: int
    primary_key: tuple[int, ...] = ()
    indexes: tuple[IndexDef, ...] = ()
    constraints: tuple[UniqueConstraintDef, ...] = ()
    sequences: tuple[SequenceDef, ...] = ()
    schedule: ScheduleDef | None = None
    system: bool = False
    public: bool = True
    defaults: tuple[ColumnDefault, ...] = ()
    """In the order the module declared them (V9 serves them in this order, and the schema hash covers it)."""
    is_event: bool = False
    """An event table (V10 only: V9 has no field for it, so it reads back as `False`, as on SpacetimeDB)."""


@dataclass(frozen=True, slots=True)
class ReducerDef:
    """A reducer: its parameters, its lifecycle hook if any, and whether clients may call it."""

    name: str
    params: ProductType
    lifecycle: Lifecycle | None = None
    client_callable: bool = True
    """V10's `FunctionVisibility`; V9 has none, so a V9 reader derives it (lifecycle and scheduled reducers are
    `Private` on SpacetimeDB: `validate/v10.rs` makes them internal)."""
    ok_return_type: AlgebraicType = at.UNIT
    err_return_type: AlgebraicType = at.STRING


@dataclass(frozen=True, slots=True)
class ProcedureDef:
    """A procedure (served by SpacetimeDB modules; this host's Python modules declare none)."""

    name: str
    params: ProductType
    return_type: AlgebraicType
    client_callable: bool = True


@dataclass(frozen=True, slots=True)
class ViewDef:
    """A view (served by SpacetimeDB modules; this host's Python modules declare none)."""

    name: str
    index: int
    is_public: bool
    is_anonymous: bool
    params: ProductType
    return_type: AlgebraicType


@dataclass(frozen=True, slots=True)
class TypeDef:
    """A named type in the typespace (what code generators call the type): `scope::name` → `typespace[ty]`."""

    scope: tuple[str, ...]
    name: str
    ty: int
    custom_ordering: bool = True


@dataclass(frozen=True, slots=True)
class ModuleDef:
    """One module's definition, independent of the `RawModuleDef` version it was read from or will be written as."""

    typespace: tuple[AlgebraicType, ...]
    tables: tuple[TableDef, ...] = ()
    reducers: tuple[ReducerDef, ...] = ()
    types: tuple[TypeDef, ...] = ()
    row_level_security: tuple[str, ...] = ()
    procedures: tuple[ProcedureDef, ...] = ()
    views: tuple[ViewDef, ...] = ()

    def table(self, name: str) -> TableDef:
        """A table by name (raises `KeyError`)."""
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(name)

    def reducer(self, name: str) -> ReducerDef:
        """A reducer by name (raises `KeyError`)."""
        for reducer in self.reducers:
            if reducer.name == name:
                return reducer
        raise KeyError(name)

    def row_type(self, table: TableDef) -> ProductType:
        """The table's row type, its reference resolved; `ModuleDefError` when it is not a product."""
        row = resolve(RefType(table.product_type_ref), self.typespace)
        if not isinstance(row, ProductType):
            raise ModuleDefError(f"table {table.name}: row type is not a product")
        return row

    def resolve(self, ty: AlgebraicType) -> AlgebraicType:
        """`ty` with its outer references followed through this module's typespace."""
        return resolve(ty, self.typespace)


def resolve(ty: AlgebraicType, typespace: Sequence[AlgebraicType]) -> AlgebraicType:
    """Follow `Ref`s until a non-reference type: the one typespace resolver (bounded, so a cycle cannot hang us)."""
    hops = 0
    while isinstance(ty, RefType):
        if not 0 <= ty.index < len(typespace):
            raise ModuleDefError(f"type reference {ty.index} outside the typespace of {len(typespace)} types")
        if hops >= MAX_REF_HOPS:
            raise ModuleDefError(f"type reference {ty.index} does not resolve (a cycle of references?)")
        ty = typespace[ty.index]
        hops += 1
    return ty


def resolve_deep(ty: AlgebraicType, typespace: Sequence[AlgebraicType], depth: int = 0) -> AlgebraicType:
    """`ty` with every nested `Ref` replaced by what it points to: the form two typespaces can be compared in."""
    if depth > MAX_REF_HOPS:
        raise ModuleDefError("type nests too deep (a recursive type?)")
    ty = resolve(ty, typespace)
    if isinstance(ty, ProductType):
        return ProductType(
            tuple(at.ProductElement(e.name, resolve_deep(e.type, typespace, depth + 1)) for e in ty.elements)
        )
    if isinstance(ty, at.SumType):
        return at.SumType(tuple(at.SumVariant(v.name, resolve_deep(v.type, typespace, depth + 1)) for v in ty.variants))
    if isinstance(ty, at.ArrayType):
        return at.ArrayType(resolve_deep(ty.element, typespace, depth + 1))
    return ty
