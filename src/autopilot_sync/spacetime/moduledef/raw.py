"""The SATS types of `RawModuleDefV9` and `RawModuleDefV10` themselves, so one codec writes and reads both forms.

Declared field by field (and variant by variant, in tag order) from SpacetimeDB's `crates/lib/src/db/raw_def/v9.rs`
and `v10.rs` (the TypeScript library's `src/lib/autogen/types.ts` is generated from the same source). With these
types the schema documents are ordinary SATS values: `sats_json` turns them into the JSON the schema route serves
and back (with its strict, path-naming errors), `bsatn` into the bytes a module's `__describe_module__` returns.

`META_TYPESPACE` holds the two recursive types: `AlgebraicType` (slot 0; a type contains types) and
`RawModuleDefV10` (slot 1; a submodule contains a module). `type_to_value` / `type_from_value` convert between our
`AlgebraicType` objects and their SATS values.
"""

from __future__ import annotations

from typing import Any

from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime.algebraic import (
    I128,
    STRING,
    U16,
    U32,
    UNIT,
    AlgebraicType,
    ArrayType,
    Primitive,
    PrimitiveKind,
    ProductElement,
    ProductType,
    RefType,
    SumType,
    SumVariant,
)
from autopilot_sync.spacetime.values import SumValue

_TYPE = RefType(0)
_MODULE_V10 = RefType(1)
_NAME = at.option(STRING)
_COLUMNS = at.array(U16)

_PRIMITIVES = tuple(sorted(PrimitiveKind, key=lambda kind: kind.value))
ELEMENT = at.product(("name", _NAME), ("algebraic_type", _TYPE))
PRODUCT_TYPE = at.product(("elements", at.array(ELEMENT)))
SUM_TYPE = at.product(("variants", at.array(ELEMENT)))
#: `AlgebraicType` (sats `algebraic_type.rs`): Ref, Sum, Product, Array, then the primitives by their BSATN tag.
ALGEBRAIC_TYPE = at.sum_type(
    ("Ref", U32),
    ("Sum", SUM_TYPE),
    ("Product", PRODUCT_TYPE),
    ("Array", _TYPE),
    *((kind.json_name, UNIT) for kind in _PRIMITIVES),
)
TYPESPACE = at.product(("types", at.array(_TYPE)))

# ----- shared by V9 and V10 (v10.rs reuses these v9.rs types) -----

#: `RawIndexAlgorithm::BTree { columns }` etc.: a variant with one named field is a newtype variant for the SATS
#: derive (`variant_data` in `crates/bindings-macro/src/sats.rs`), so the payload is the bare column list (the
#: library's types.ts agrees). Earlier releases of this host wrapped it as `{"columns": …}` in V9 JSON; the schema
#: hash still covers that form (`v9.legacy_hash_form`) and readers accept both.
INDEX_ALGORITHM = at.sum_type(("BTree", _COLUMNS), ("Hash", _COLUMNS), ("Direct", U16))
CONSTRAINT_DATA = at.sum_type(("Unique", at.product(("columns", _COLUMNS))))
TABLE_TYPE = at.sum_type(("System", UNIT), ("User", UNIT))
TABLE_ACCESS = at.sum_type(("Public", UNIT), ("Private", UNIT))
LIFECYCLE = at.sum_type(("Init", UNIT), ("OnConnect", UNIT), ("OnDisconnect", UNIT))
ROW_LEVEL_SECURITY = at.product(("sql", STRING))


def _sequence(name_field: str) -> ProductType:
    return at.product(
        (name_field, _NAME),
        ("column", U16),
        ("start", at.option(I128)),
        ("min_value", at.option(I128)),
        ("max_value", at.option(I128)),
        ("increment", I128),
    )


# ----- RawModuleDefV9 (v9.rs) -----

INDEX_V9 = at.product(("name", _NAME), ("accessor_name", _NAME), ("algorithm", INDEX_ALGORITHM))
CONSTRAINT_V9 = at.product(("name", _NAME), ("data", CONSTRAINT_DATA))
SEQUENCE_V9 = _sequence("name")
SCHEDULE_V9 = at.product(("name", _NAME), ("reducer_name", STRING), ("scheduled_at_column", U16))
TABLE_V9 = at.product(
    ("name", STRING),
    ("product_type_ref", U32),
    ("primary_key", _COLUMNS),
    ("indexes", at.array(INDEX_V9)),
    ("constraints", at.array(CONSTRAINT_V9)),
    ("sequences", at.array(SEQUENCE_V9)),
    ("schedule", at.option(SCHEDULE_V9)),
    ("table_type", TABLE_TYPE),
    ("table_access", TABLE_ACCESS),
)
REDUCER_V9 = at.product(("name", STRING), ("params", PRODUCT_TYPE), ("lifecycle", at.option(LIFECYCLE)))
TYPE_DEF_V9 = at.product(
    ("name", at.product(("scope", at.array(STRING)), ("name", STRING))), ("ty", U32), ("custom_ordering", at.BOOL)
)
COLUMN_DEFAULT_V9 = at.product(("table", STRING), ("col_id", U16), ("value", at.BYTES))
PROCEDURE_V9 = at.product(("name", STRING), ("params", PRODUCT_TYPE), ("return_type", _TYPE))
VIEW_V9 = at.product(
    ("name", STRING),
    ("index", U32),
    ("is_public", at.BOOL),
    ("is_anonymous", at.BOOL),
    ("params", PRODUCT_TYPE),
    ("return_type", _TYPE),
)
MISC_EXPORT_V9 = at.sum_type(("ColumnDefaultValue", COLUMN_DEFAULT_V9), ("Procedure", PROCEDURE_V9), ("View", VIEW_V9))
MODULE_V9 = at.product(
    ("typespace", TYPESPACE),
    ("tables", at.array(TABLE_V9)),
    ("reducers", at.array(REDUCER_V9)),
    ("types", at.array(TYPE_DEF_V9)),
    ("misc_exports", at.array(MISC_EXPORT_V9)),
    ("row_level_security", at.array(ROW_LEVEL_SECURITY)),
)

# ----- RawModuleDefV10 (v10.rs) -----

INDEX_V10 = at.product(("source_name", _NAME), ("accessor_name", _NAME), ("algorithm", INDEX_ALGORITHM))
CONSTRAINT_V10 = at.product(("source_name", _NAME), ("data", CONSTRAINT_DATA))
SEQUENCE_V10 = _sequence("source_name")
COLUMN_DEFAULT_V10 = at.product(("col_id", U16), ("value", at.BYTES))
TABLE_V10 = at.product(
    ("source_name", STRING),
    ("product_type_ref", U32),
    ("primary_key", _COLUMNS),
    ("indexes", at.array(INDEX_V10)),
    ("constraints", at.array(CONSTRAINT_V10)),
    ("sequences", at.array(SEQUENCE_V10)),
    ("table_type", TABLE_TYPE),
    ("table_access", TABLE_ACCESS),
    ("default_values", at.array(COLUMN_DEFAULT_V10)),
    ("is_event", at.BOOL),
)
FUNCTION_VISIBILITY = at.sum_type(("Private", UNIT), ("ClientCallable", UNIT))
REDUCER_V10 = at.product(
    ("source_name", STRING),
    ("params", PRODUCT_TYPE),
    ("visibility", FUNCTION_VISIBILITY),
    ("ok_return_type", _TYPE),
    ("err_return_type", _TYPE),
)
PROCEDURE_V10 = at.product(
    ("source_name", STRING), ("params", PRODUCT_TYPE), ("return_type", _TYPE), ("visibility", FUNCTION_VISIBILITY)
)
VIEW_V10 = at.product(
    ("source_name", STRING),
    ("index", U32),
    ("is_public", at.BOOL),
    ("is_anonymous", at.BOOL),
    ("params", PRODUCT_TYPE),
    ("return_type", _TYPE),
)
SCHEDULE_V10 = at.product(
    ("source_name", _NAME), ("table_name", STRING), ("schedule_at_col", U16), ("function_name", STRING)
)
LIFECYCLE_V10 = at.product(("lifecycle_spec", LIFECYCLE), ("function_name", STRING))
TYPE_DEF_V10 = at.product(
    ("source_name", at.product(("scope", at.array(STRING)), ("source_name", STRING))),
    ("ty", U32),
    ("custom_ordering", at.BOOL),
)
CASE_CONVERSION_POLICY = at.sum_type(("None", UNIT), ("SnakeCase", UNIT))
NAME_MAPPING = at.product(("source_name", STRING), ("canonical_name", STRING))
EXPLICIT_NAMES = at.product(
    ("entries", at.array(at.sum_type(("Table", NAME_MAPPING), ("Function", NAME_MAPPING), ("Index", NAME_MAPPING))))
)
HTTP_METHOD = at.sum_type(
    *((name, UNIT) for name in ("Get", "Head", "Post", "Put", "Delete", "Connect", "Options", "Trace", "Patch")),
    ("Extension", STRING),
)
HTTP_ROUTE_V10 = at.product(
    ("handler_function", STRING), ("method", at.sum_type(("Any", UNIT), ("Method", HTTP_METHOD))), ("path", STRING)
)
SECTION_V10 = at.sum_type(
    ("Typespace", TYPESPACE),
    ("Types", at.array(TYPE_DEF_V10)),
    ("Tables", at.array(TABLE_V10)),
    ("Reducers", at.array(REDUCER_V10)),
    ("Procedures", at.array(PROCEDURE_V10)),
    ("Views", at.array(VIEW_V10)),
    ("Schedules", at.array(SCHEDULE_V10)),
    ("LifeCycleReducers", at.array(LIFECYCLE_V10)),
    ("RowLevelSecurity", at.array(ROW_LEVEL_SECURITY)),
    ("CaseConversionPolicy", CASE_CONVERSION_POLICY),
    ("ExplicitNames", EXPLICIT_NAMES),
    ("HttpHandlers", at.array(at.product(("source_name", STRING)))),
    ("HttpRoutes", at.array(HTTP_ROUTE_V10)),
    ("ViewPrimaryKeys", at.array(at.product(("view_source_name", STRING), ("columns", at.array(STRING))))),
    ("Submodules", at.array(at.product(("namespace", STRING), ("module", _MODULE_V10)))),
)
MODULE_V10 = at.product(("sections", at.array(SECTION_V10)))

META_TYPESPACE: tuple[AlgebraicType, ...] = (ALGEBRAIC_TYPE, MODULE_V10)
"""Slot 0: `AlgebraicType`; slot 1: `RawModuleDefV10` (both recursive)."""

#: `RawModuleDef` (raw_def.rs), the enum a module's `__describe_module__` returns: V8BackCompat, V9, V10.
RAW_MODULE_DEF_V9_TAG = 1
RAW_MODULE_DEF_V10_TAG = 2

_REF, _SUM, _PRODUCT, _ARRAY = 0, 1, 2, 3
_FIRST_PRIMITIVE = 4


def type_to_value(ty: AlgebraicType) -> SumValue:
    """Our `AlgebraicType` as a SATS value of `ALGEBRAIC_TYPE`."""
    if isinstance(ty, RefType):
        return SumValue(_REF, ty.index)
    if isinstance(ty, ProductType):
        return SumValue(_PRODUCT, (product_to_value(ty)[0],))
    if isinstance(ty, SumType):
        return SumValue(_SUM, ([(v.name, type_to_value(v.type)) for v in ty.variants],))
    if isinstance(ty, ArrayType):
        return SumValue(_ARRAY, type_to_value(ty.element))
    if isinstance(ty, Primitive):
        return SumValue(_FIRST_PRIMITIVE + _PRIMITIVES.index(ty.kind), ())
    raise TypeError(f"not an algebraic type: {ty!r}")


def product_to_value(ty: ProductType) -> tuple[list[tuple[str | None, SumValue]]]:
    """A `ProductType` as a SATS value of `PRODUCT_TYPE` (reducer parameters are written as bare products)."""
    return ([(e.name, type_to_value(e.type)) for e in ty.elements],)


def type_from_value(value: Any) -> AlgebraicType:
    """The `AlgebraicType` a SATS value of `ALGEBRAIC_TYPE` describes."""
    tag, payload = value.tag, value.value
    if tag == _REF:
        return RefType(int(payload))
    if tag == _PRODUCT:
        return product_from_value(payload)
    if tag == _SUM:
        return SumType(tuple(SumVariant(name, type_from_value(inner)) for name, inner in payload[0]))
    if tag == _ARRAY:
        return ArrayType(type_from_value(payload))
    return Primitive(_PRIMITIVES[tag - _FIRST_PRIMITIVE])


def product_from_value(value: Any) -> ProductType:
    """The `ProductType` a SATS value of `PRODUCT_TYPE` describes."""
    return ProductType(tuple(ProductElement(name, type_from_value(inner)) for name, inner in value[0]))
