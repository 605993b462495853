"""The checks every reader runs, so code that uses a `ModuleDef` can index columns and follow references safely.

Not SpacetimeDB's full validation (`crates/schema/src/def/validate/`): only what a reader of the definition relies
on. Every type reference resolves inside the typespace; every table's row type is a product; every column position
(primary key, index, constraint, sequence, schedule, default) is a column of that table; names are unique.
"""

from __future__ import annotations

from collections.abc import Iterable

from autopilot_sync.spacetime.algebraic import AlgebraicType, ArrayType, ProductType, RefType, SumType
from autopilot_sync.spacetime.moduledef.model import MAX_REF_HOPS, ModuleDef, ModuleDefError, TableDef, resolve


def validate(definition: ModuleDef) -> None:
    """Raise `ModuleDefError` naming the first thing a reader could not rely on."""
    typespace = definition.typespace
    for ty in typespace:
        _check_refs(ty, len(typespace))
    for ty in typespace:
        resolve(ty, typespace)  # a cycle made only of references never reaches a type
    _unique("table", (t.name for t in definition.tables))
    _unique("reducer", (r.name for r in definition.reducers))
    for table in definition.tables:
        _check_table(definition, table)
    for reducer in definition.reducers:
        _check_refs(reducer.params, len(typespace))
    for type_def in definition.types:
        if not 0 <= type_def.ty < len(typespace):
            raise ModuleDefError(f"type {type_def.name}: reference {type_def.ty} outside the typespace")


def _unique(what: str, names: Iterable[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ModuleDefError(f"{what} {name!r} is defined twice")
        seen.add(name)


def _check_refs(ty: AlgebraicType, size: int, depth: int = 0) -> None:
    if depth > MAX_REF_HOPS:
        raise ModuleDefError("type nests too deep")
    if isinstance(ty, RefType):
        if not 0 <= ty.index < size:
            raise ModuleDefError(f"type reference {ty.index} outside the typespace of {size} types")
    elif isinstance(ty, ProductType):
        for element in ty.elements:
            _check_refs(element.type, size, depth + 1)
    elif isinstance(ty, SumType):
        for variant in ty.variants:
            _check_refs(variant.type, size, depth + 1)
    elif isinstance(ty, ArrayType):
        _check_refs(ty.element, size, depth + 1)


def _check_table(definition: ModuleDef, table: TableDef) -> None:
    if not 0 <= table.product_type_ref < len(definition.typespace):
        raise ModuleDefError(f"table {table.name}: product_type_ref {table.product_type_ref} outside the typespace")
    width = len(definition.row_type(table).elements)

    def columns(what: str, positions: Iterable[int]) -> None:
        for position in positions:
            if not 0 <= position < width:
                raise ModuleDefError(f"table {table.name}: {what} column {position} out of range")

    columns("primary key", table.primary_key)
    for index in table.indexes:
        columns("index", index.columns)
    for constraint in table.constraints:
        columns("unique constraint", constraint.columns)
    columns("sequence", (s.column for s in table.sequences))
    columns("default", (d.column for d in table.defaults))
    if table.schedule is not None:
        columns("schedule", (table.schedule.at_column,))
