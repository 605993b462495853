"""SQL literals to column values: each literal is checked against its column's type when the query is compiled.

That check is why a query that compiles cannot fail while it runs, whether on the snapshot or on every later
transaction; the error texts follow the real host's `expr` crate (`The literal expression ... cannot be parsed
as type ...`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from autopilot_sync.host.sql.parse import DIALECT
from autopilot_sync.host.sql.plan import SqlError
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime.algebraic import INT_RANGES, AlgebraicType, ArrayType, Primitive, PrimitiveKind
from autopilot_sync.spacetime.values import ConnectionId, Identity, TimeDuration, Timestamp

_FLOATS = (PrimitiveKind.F32, PrimitiveKind.F64)


def type_name(ty: AlgebraicType) -> str:
    """The type as the real host names it in error messages (`U32`, `Identity`, `Array<U8>`)."""
    if isinstance(ty, Primitive):
        return ty.kind.json_name
    special = at.special_tag(ty)
    if special == at.IDENTITY_TAG:
        return "Identity"
    if special == at.CONNECTION_ID_TAG:
        return "ConnectionId"
    if special == at.TIMESTAMP_TAG:
        return "Timestamp"
    if special == at.TIME_DURATION_TAG:
        return "TimeDuration"
    if ty == at.BYTES:
        return "Array<U8>"
    if isinstance(ty, ArrayType):
        return f"Array<{type_name(ty.element)}>"
    if at.is_option(ty):
        return "Option"
    return type(ty).__name__.removesuffix("Type")


def orderable(ty: AlgebraicType) -> bool:
    """Whether `< > <= >=` apply to the type (not to booleans, sums or products)."""
    if isinstance(ty, Primitive):
        return ty.kind is not PrimitiveKind.BOOL
    return at.special_tag(ty) is not None or ty == at.BYTES


@dataclass(frozen=True, slots=True)
class _Lit:
    kind: str  # "int" | "float" | "string" | "hex" | "bool" | "sender"
    text: str
    value: Any


def _read_literal(node: exp.Expression, sender: Identity | None) -> _Lit:
    negative = False
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Neg):
        negative, node = True, node.this
    if isinstance(node, exp.Literal):
        text = str(node.this)
        if node.is_string:
            if negative:
                raise SqlError(f"Unsupported expression: -{node.sql(DIALECT)}")
            return _Lit("string", f"'{text}'", text)
        sign = "-" if negative else ""
        try:
            return _Lit("int", sign + text, int(sign + text))
        except ValueError:
            try:
                number = float(sign + text)
            except ValueError:
                raise SqlError(f"Unsupported literal expression: {text}") from None
            return _Lit("float", sign + text, number)
    if isinstance(node, exp.HexString) and not negative:
        digits = str(node.this)
        return _Lit("hex", f"0x{digits}", digits)
    if isinstance(node, exp.Boolean) and not negative:
        return _Lit("bool", str(node.this).lower(), bool(node.this))
    if isinstance(node, exp.Placeholder) and not negative and node.name == "sender":
        if sender is None:
            raise SqlError("`:sender` is not available here")
        return _Lit("sender", ":sender", sender)
    raise SqlError(f"Unsupported literal expression: {('-' if negative else '') + node.sql(DIALECT)}")


def literal(node: exp.Expression, ty: AlgebraicType, sender: Identity | None) -> Any:
    """The literal as a value of the column type `ty` (`:sender` is `sender`); SqlError when it cannot be one."""
    lit = _read_literal(node, sender)
    try:
        value = _convert(lit, ty)
    except SqlError:
        raise
    except (ValueError, OverflowError):
        value = None
    if value is None:
        raise SqlError(f"The literal expression `{lit.text}` cannot be parsed as type `{type_name(ty)}`")
    return value


def _hex_bytes(lit: _Lit) -> bytes | None:
    if lit.kind == "hex":
        digits = str(lit.value)
    elif lit.kind == "string":
        digits = str(lit.value).removeprefix("0x")
    else:
        return None
    if len(digits) % 2:
        return None
    return bytes.fromhex(digits)


def _convert(lit: _Lit, ty: AlgebraicType) -> Any:
    """The literal as a value of `ty` (None when it cannot be one)."""
    if isinstance(ty, Primitive):
        kind = ty.kind
        if kind in INT_RANGES:
            if lit.kind == "int":
                number = int(lit.value)
            elif lit.kind == "hex":
                number = int(str(lit.value), 16)
            else:
                return None
            low, high = INT_RANGES[kind]
            return number if low <= number <= high else None
        if kind in _FLOATS:
            if lit.kind not in ("int", "float"):
                return None
            number_f = float(lit.value)
            return number_f if math.isfinite(number_f) else None
        if kind is PrimitiveKind.STRING:
            return lit.value if lit.kind == "string" else None
        if kind is PrimitiveKind.BOOL:
            return lit.value if lit.kind == "bool" else None
        return None
    special = at.special_tag(ty)
    if special == at.IDENTITY_TAG:
        if lit.kind == "sender":
            return lit.value
        raw = _hex_bytes(lit)
        return Identity.from_be_bytes(raw) if raw is not None and len(raw) == 32 else None
    if special == at.CONNECTION_ID_TAG:
        raw = _hex_bytes(lit)
        return ConnectionId(int.from_bytes(raw, "big")) if raw is not None and len(raw) == 16 else None
    if special == at.TIMESTAMP_TAG:
        if lit.kind == "int":
            return Timestamp(int(lit.value))
        if lit.kind == "string":
            return _parse_timestamp(str(lit.value))
        return None
    if special == at.TIME_DURATION_TAG:
        return TimeDuration(int(lit.value)) if lit.kind == "int" else None
    if ty == at.BYTES:
        return _hex_bytes(lit)
    raise SqlError(f"Invalid binary operator `=` for type `{type_name(ty)}` (comparisons need a scalar column)")


def _parse_timestamp(text: str) -> Timestamp | None:
    import datetime as dt

    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    delta = parsed - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return Timestamp((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)
