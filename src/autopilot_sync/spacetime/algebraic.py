"""Typed descriptions of SATS algebraic types, able to express any table row or message.

Mirrors SpacetimeDB's `sats` crate: primitives, products, sums, arrays and references into a typespace. The special
products (Identity, ConnectionId, Timestamp, TimeDuration) are recognised by their single magic field name, exactly as
the real host and the TypeScript SDK do.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class PrimitiveKind(enum.Enum):
    """Primitive SATS types; the value is the `AlgebraicType` BSATN tag."""

    STRING = 4
    BOOL = 5
    I8 = 6
    U8 = 7
    I16 = 8
    U16 = 9
    I32 = 10
    U32 = 11
    I64 = 12
    U64 = 13
    I128 = 14
    U128 = 15
    I256 = 16
    U256 = 17
    F32 = 18
    F64 = 19

    @property
    def json_name(self) -> str:
        """Name used in SATS-JSON (`{"U32": []}`)."""
        return self.name.title() if self in (PrimitiveKind.STRING, PrimitiveKind.BOOL) else self.name


_INT_WIDTHS: dict[PrimitiveKind, tuple[int, bool]] = {
    PrimitiveKind.I8: (8, True),
    PrimitiveKind.U8: (8, False),
    PrimitiveKind.I16: (16, True),
    PrimitiveKind.U16: (16, False),
    PrimitiveKind.I32: (32, True),
    PrimitiveKind.U32: (32, False),
    PrimitiveKind.I64: (64, True),
    PrimitiveKind.U64: (64, False),
    PrimitiveKind.I128: (128, True),
    PrimitiveKind.U128: (128, False),
    PrimitiveKind.I256: (256, True),
    PrimitiveKind.U256: (256, False),
}

INT_RANGES: dict[PrimitiveKind, tuple[int, int]] = {
    kind: (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    for kind, (bits, signed) in _INT_WIDTHS.items()
}
"""Inclusive bounds of every integer kind: the one table SQL literals, SATS-JSON and checks validate against."""


class AlgebraicType:
    """Base of every type description."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Primitive(AlgebraicType):
    """A scalar: integer of a given width, float, bool or string."""

    kind: PrimitiveKind


@dataclass(frozen=True, slots=True)
class ProductElement:
    """One field of a product; `name` is None for positional fields."""

    name: str | None
    type: AlgebraicType


@dataclass(frozen=True, slots=True)
class ProductType(AlgebraicType):
    """A struct: fields encoded in declaration order with no names on the wire."""

    elements: tuple[ProductElement, ...]

    def field_names(self) -> tuple[str, ...]:
        """Names of the fields, with positional fields named by index."""
        return tuple(e.name if e.name is not None else str(i) for i, e in enumerate(self.elements))

    def index_of(self, name: str) -> int:
        """Position of a named field (raises KeyError)."""
        for i, element in enumerate(self.elements):
            if element.name == name:
                return i
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class SumVariant:
    """One variant of a sum; its tag is its position."""

    name: str | None
    type: AlgebraicType


@dataclass(frozen=True, slots=True)
class SumType(AlgebraicType):
    """A tagged union: u8 tag then the variant's payload."""

    variants: tuple[SumVariant, ...]

    def tag_of(self, name: str) -> int:
        """Tag of a named variant (raises KeyError)."""
        for i, variant in enumerate(self.variants):
            if variant.name == name:
                return i
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class ArrayType(AlgebraicType):
    """A homogeneous list (bytes when the element is U8)."""

    element: AlgebraicType


@dataclass(frozen=True, slots=True)
class RefType(AlgebraicType):
    """A reference to a type in the module's typespace, by index."""

    index: int


def product(*fields: tuple[str | None, AlgebraicType]) -> ProductType:
    """Build a product from (name, type) pairs in declaration order."""
    return ProductType(tuple(ProductElement(name, ty) for name, ty in fields))


def sum_type(*variants: tuple[str | None, AlgebraicType]) -> SumType:
    """Build a sum from (name, type) pairs in tag order."""
    return SumType(tuple(SumVariant(name, ty) for name, ty in variants))


BOOL = Primitive(PrimitiveKind.BOOL)
I8 = Primitive(PrimitiveKind.I8)
U8 = Primitive(PrimitiveKind.U8)
I16 = Primitive(PrimitiveKind.I16)
U16 = Primitive(PrimitiveKind.U16)
I32 = Primitive(PrimitiveKind.I32)
U32 = Primitive(PrimitiveKind.U32)
I64 = Primitive(PrimitiveKind.I64)
U64 = Primitive(PrimitiveKind.U64)
I128 = Primitive(PrimitiveKind.I128)
U128 = Primitive(PrimitiveKind.U128)
I256 = Primitive(PrimitiveKind.I256)
U256 = Primitive(PrimitiveKind.U256)
F32 = Primitive(PrimitiveKind.F32)
F64 = Primitive(PrimitiveKind.F64)
STRING = Primitive(PrimitiveKind.STRING)
BYTES = ArrayType(U8)
UNIT = ProductType(())

IDENTITY_TAG = "__identity__"
CONNECTION_ID_TAG = "__connection_id__"
TIMESTAMP_TAG = "__timestamp_micros_since_unix_epoch__"
TIME_DURATION_TAG = "__time_duration_micros__"

IDENTITY = product((IDENTITY_TAG, U256))
CONNECTION_ID = product((CONNECTION_ID_TAG, U128))
TIMESTAMP = product((TIMESTAMP_TAG, I64))
TIME_DURATION = product((TIME_DURATION_TAG, I64))
SCHEDULE_AT = sum_type(("Interval", TIME_DURATION), ("Time", TIMESTAMP))


def option(inner: AlgebraicType) -> SumType:
    """`Option<T>`: tag 0 `some(T)`, tag 1 `none`."""
    return sum_type(("some", inner), ("none", UNIT))


def result(ok: AlgebraicType, err: AlgebraicType) -> SumType:
    """`Result<T, E>`: tag 0 `ok(T)`, tag 1 `err(E)`."""
    return sum_type(("ok", ok), ("err", err))


def array(element: AlgebraicType) -> ArrayType:
    """`Vec<T>`."""
    return ArrayType(element)


def special_tag(ty: AlgebraicType) -> str | None:
    """The magic field name when `ty` is one of the special single-field products."""
    if isinstance(ty, ProductType) and len(ty.elements) == 1:
        name = ty.elements[0].name
        if name in (IDENTITY_TAG, CONNECTION_ID_TAG, TIMESTAMP_TAG, TIME_DURATION_TAG):
            return name
    return None


def is_option(ty: AlgebraicType) -> bool:
    """True when `ty` has the exact shape of `Option<T>`."""
    return (
        isinstance(ty, SumType)
        and len(ty.variants) == 2
        and ty.variants[0].name == "some"
        and ty.variants[1].name == "none"
        and ty.variants[1].type == UNIT
    )


def is_schedule_at(ty: AlgebraicType) -> bool:
    """True when `ty` has the shape of `ScheduleAt`."""
    return ty == SCHEDULE_AT


# ----- SATS-JSON form of types (as in RawModuleDefV9's typespace) -----


def _name_to_json(name: str | None) -> dict[str, Any]:
    return {"some": name} if name is not None else {"none": []}


def _name_from_json(value: Any) -> str | None:
    if isinstance(value, dict) and "some" in value:
        return str(value["some"])
    return None


def to_json(ty: AlgebraicType) -> dict[str, Any]:
    """SATS-JSON of a type, the form the host serves in `/schema?version=9`."""
    if isinstance(ty, Primitive):
        return {ty.kind.json_name: []}
    if isinstance(ty, ProductType):
        return {
            "Product": {
                "elements": [{"name": _name_to_json(e.name), "algebraic_type": to_json(e.type)} for e in ty.elements]
            }
        }
    if isinstance(ty, SumType):
        return {
            "Sum": {
                "variants": [{"name": _name_to_json(v.name), "algebraic_type": to_json(v.type)} for v in ty.variants]
            }
        }
    if isinstance(ty, ArrayType):
        return {"Array": to_json(ty.element)}
    if isinstance(ty, RefType):
        return {"Ref": ty.index}
    raise TypeError(f"not an algebraic type: {ty!r}")


_PRIMITIVE_BY_JSON = {kind.json_name: Primitive(kind) for kind in PrimitiveKind}


def from_json(value: Any) -> AlgebraicType:
    """Parse the SATS-JSON form of a type; raises ValueError on anything else."""
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError(f"algebraic type must be an object with one key, got {value!r}")
    ((key, body),) = value.items()
    if key in _PRIMITIVE_BY_JSON:
        return _PRIMITIVE_BY_JSON[key]
    if key == "Product":
        return ProductType(
            tuple(
                ProductElement(_name_from_json(e.get("name")), from_json(e["algebraic_type"])) for e in body["elements"]
            )
        )
    if key == "Sum":
        return SumType(
            tuple(SumVariant(_name_from_json(v.get("name")), from_json(v["algebraic_type"])) for v in body["variants"])
        )
    if key == "Array":
        return ArrayType(from_json(body))
    if key == "Ref":
        return RefType(int(body))
    raise ValueError(f"unknown algebraic type {key!r}")
