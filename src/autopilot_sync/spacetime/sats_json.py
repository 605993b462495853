"""SATS-JSON: the JSON form of algebraic values that SpacetimeDB's HTTP API reads and writes.

The real host has two JSON forms and we speak both, because clients of either kind point at us:
- **typed** (`to_json`): what its typed serializer emits (procedure results, schema): named products as objects,
  sums as `{"variant": payload}`, unit payloads as `[]` (as in the schema JSON; the real typed serializer writes `{}`
  for an empty product, and both are accepted on input), `Option` as `{"some": x}` / `{"none": []}`, special types as
  their one-field products (`{"__identity__": "0x…"}`, `{"__timestamp_micros_since_unix_epoch__": n}`).
- **untyped** (`to_untyped_json`): what `/sql` emits for rows (they are serialized without their type): every product
  as a JSON array, every sum as `[tag, payload]`, so an identity column is `["0x…"]`.
Scalars are the same in both: integers up to 128 bits are JSON numbers (exact, never strings), 256-bit integers are
`"0x…"` hex strings (ethnum's format: minimal digits, `-0x…` when negative), floats are numbers (`null` when not
finite), `Array<U8>` is a lowercase hex string.

Input (`from_json`, `decode_args`) accepts everything the real deserializer accepts: products as arrays or objects
keyed by field name, sums as `{"name": p}`, `{"<tag>": p}` or `[tag-or-name, p]`, `null` for `Option::none`, bytes as
hex (optionally `0x`) or an array of u8. Anything else fails with a `SatsJsonError` naming the JSON path and the
expected type, which the HTTP API returns as the 400 body.

Value conventions match `bsatn.py`: products are tuples, sums `SumValue` except `Option` (the value or `None`),
`Array<U8>` is `bytes`, special products are `Identity`, `ConnectionId`, `Timestamp`, `TimeDuration`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

from autopilot_sync.spacetime.algebraic import (
    CONNECTION_ID_TAG,
    IDENTITY_TAG,
    INT_RANGES,
    TIME_DURATION_TAG,
    TIMESTAMP_TAG,
    U8,
    AlgebraicType,
    ArrayType,
    Primitive,
    PrimitiveKind,
    ProductType,
    RefType,
    SumType,
    is_option,
    special_tag,
)
from autopilot_sync.spacetime.json_bounds import JsonBoundsError, bounded_loads
from autopilot_sync.spacetime.values import ConnectionId, Identity, SumValue, TimeDuration, Timestamp

#: Depth bound for nested values, so a hostile body cannot exhaust the stack.
MAX_DEPTH = 64

_WIDE_256 = (PrimitiveKind.I256, PrimitiveKind.U256)
_FLOATS = (PrimitiveKind.F32, PrimitiveKind.F64)
_HEX_RE = re.compile(r"(?:0x)?((?:[0-9a-fA-F]{2})*)")
_INT_TEXT_RE = re.compile(r"(-)?(0x[0-9a-fA-F]+|[0-9]+)")
_SPECIAL_CLASSES: dict[str, tuple[type, str, PrimitiveKind]] = {
    IDENTITY_TAG: (Identity, "value", PrimitiveKind.U256),
    CONNECTION_ID_TAG: (ConnectionId, "value", PrimitiveKind.U128),
    TIMESTAMP_TAG: (Timestamp, "micros", PrimitiveKind.I64),
    TIME_DURATION_TAG: (TimeDuration, "micros", PrimitiveKind.I64),
}


class SatsJsonError(ValueError):
    """A JSON value that does not fit the expected algebraic type; `path` says where (`$[1].text`)."""

    def __init__(self, path: str, expected: str, got: Any) -> None:
        self.path = path
        self.expected = expected
        self.got = _describe(got)
        super().__init__(f"at {path}: expected {expected}, got {self.got}")


class _Verbatim(str):
    """A `got` that is already a description (not a JSON value to describe)."""


def _describe(value: Any) -> str:
    if isinstance(value, _Verbatim):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"number {value!r:.40}"
    if isinstance(value, str):
        return f"string {json.dumps(value)[:40]}"
    if isinstance(value, list):
        return f"array of {len(value)}"
    if isinstance(value, dict):
        return "object" if not value else f"object with keys {sorted(value)[:5]}"
    return type(value).__name__


def _type_name(ty: AlgebraicType) -> str:
    if isinstance(ty, Primitive):
        return ty.kind.json_name.lower() if ty.kind in (PrimitiveKind.STRING, PrimitiveKind.BOOL) else ty.kind.name
    tag = special_tag(ty)
    if tag is not None:
        return {
            IDENTITY_TAG: "Identity",
            CONNECTION_ID_TAG: "ConnectionId",
            TIMESTAMP_TAG: "Timestamp",
            TIME_DURATION_TAG: "TimeDuration",
        }[tag]
    if isinstance(ty, ArrayType):
        return "bytes (hex string)" if ty.element == U8 else f"array of {_type_name(ty.element)}"
    if isinstance(ty, ProductType):
        return f"product ({', '.join(ty.field_names())})"
    if isinstance(ty, SumType):
        if is_option(ty):
            return f"Option<{_type_name(ty.variants[0].type)}>"
        return f"sum ({' | '.join(v.name or str(i) for i, v in enumerate(ty.variants))})"
    if isinstance(ty, RefType):
        return f"type #{ty.index}"
    return type(ty).__name__


def _resolve(ty: AlgebraicType, typespace: Sequence[AlgebraicType]) -> AlgebraicType:
    seen = 0
    while isinstance(ty, RefType):
        if not 0 <= ty.index < len(typespace) or seen > len(typespace):
            raise ValueError(f"type reference {ty.index} outside the typespace of {len(typespace)} types")
        ty = typespace[ty.index]
        seen += 1
    return ty


# ----- output -----


def _int_out(kind: PrimitiveKind, value: int) -> Any:
    if kind in _WIDE_256:
        return f"-0x{-value:x}" if value < 0 else f"0x{value:x}"
    return value


def _float_out(value: float) -> float | None:
    return value if math.isfinite(value) else None


def to_json(ty: AlgebraicType, value: Any, typespace: Sequence[AlgebraicType] = ()) -> Any:
    """Typed SATS-JSON of `value`, as the real host's typed serializer writes it."""
    return _out(ty, value, typespace, typed=True)


def to_untyped_json(ty: AlgebraicType, value: Any, typespace: Sequence[AlgebraicType] = ()) -> Any:
    """Untyped SATS-JSON (products as arrays, sums as `[tag, payload]`): the form of rows in `/sql` responses."""
    return _out(ty, value, typespace, typed=False)


def _out(ty: AlgebraicType, value: Any, typespace: Sequence[AlgebraicType], typed: bool) -> Any:
    ty = _resolve(ty, typespace)
    if isinstance(ty, Primitive):
        if ty.kind in INT_RANGES:
            return _int_out(ty.kind, value)
        if ty.kind in _FLOATS:
            return _float_out(float(value))
        return value
    if isinstance(ty, ArrayType):
        if ty.element == U8:
            return bytes(value).hex()
        return [_out(ty.element, item, typespace, typed) for item in value]
    if isinstance(ty, ProductType):
        tag = special_tag(ty)
        if tag is not None:
            _, attr, inner_kind = _SPECIAL_CLASSES[tag]
            scalar = _int_out(inner_kind, getattr(value, attr))
            return {tag: scalar} if typed else [scalar]
        if isinstance(value, dict):
            value = tuple(value[name] for name in ty.field_names())
        items = [_out(e.type, v, typespace, typed) for e, v in zip(ty.elements, value, strict=True)]
        if typed and items and all(e.name is not None for e in ty.elements):
            return {e.name: item for e, item in zip(ty.elements, items, strict=True)}
        return items
    if isinstance(ty, SumType):
        if is_option(ty):
            index, payload = (1, ()) if value is None else (0, value)
        else:
            index, payload = value.tag, value.value
        variant = ty.variants[index]
        inner = _out(variant.type, payload, typespace, typed)
        if typed and variant.name is not None:
            return {variant.name: inner}
        return [index, inner]
    raise TypeError(f"not an algebraic type: {ty!r}")


# ----- input -----


def loads(text: str | bytes) -> Any:
    """Parse JSON text strictly: no NaN/Infinity, no duplicate object keys, nesting and numbers bounded
    (json_bounds.py); raises SatsJsonError at `$`."""

    def no_constants(name: str) -> Any:
        raise SatsJsonError("$", "valid JSON", f"constant {name}")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, item in pairs:
            if key in out:
                raise SatsJsonError("$", "an object without duplicate keys", f"duplicate key {key!r}")
            out[key] = item
        return out

    try:
        return bounded_loads(text, parse_constant=no_constants, object_pairs_hook=no_duplicates)
    except JsonBoundsError as exc:
        raise SatsJsonError("$", exc.expected, _Verbatim(exc.found)) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SatsJsonError("$", "valid JSON", f"invalid JSON ({exc})") from None


def from_json(ty: AlgebraicType, data: Any, typespace: Sequence[AlgebraicType] = (), path: str = "$") -> Any:
    """Decode parsed JSON `data` as a value of `ty`; raises SatsJsonError (with the path) when it does not fit."""
    return _in(ty, data, typespace, path, 0)


def decode_args(params: ProductType, text: str | bytes, typespace: Sequence[AlgebraicType] = ()) -> tuple[Any, ...]:
    """Reducer-call arguments from an HTTP body: a positional JSON array (or an object keyed by parameter name)."""
    value = from_json(params, loads(text), typespace)
    assert isinstance(value, tuple)
    return value


def _in(ty: AlgebraicType, data: Any, typespace: Sequence[AlgebraicType], path: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise SatsJsonError(path, f"nesting of at most {MAX_DEPTH} levels", "deeper nesting")
    ty = _resolve(ty, typespace)
    if isinstance(ty, Primitive):
        return _primitive_in(ty.kind, data, path)
    if isinstance(ty, ArrayType):
        if ty.element == U8:
            return _bytes_in(data, path)
        if not isinstance(data, list):
            raise SatsJsonError(path, _type_name(ty), data)
        return [_in(ty.element, item, typespace, f"{path}[{i}]", depth + 1) for i, item in enumerate(data)]
    if isinstance(ty, ProductType):
        tag = special_tag(ty)
        if tag is not None:
            return _special_in(tag, ty, data, path)
        return _product_in(ty, data, typespace, path, depth)
    if isinstance(ty, SumType):
        return _sum_in(ty, data, typespace, path, depth)
    raise TypeError(f"not an algebraic type: {ty!r}")


def _primitive_in(kind: PrimitiveKind, data: Any, path: str) -> Any:
    if kind is PrimitiveKind.BOOL:
        if not isinstance(data, bool):
            raise SatsJsonError(path, "bool", data)
        return data
    if kind is PrimitiveKind.STRING:
        if not isinstance(data, str):
            raise SatsJsonError(path, "string", data)
        return data
    if kind in _FLOATS:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise SatsJsonError(path, kind.name, data)
        return float(data)
    low, high = INT_RANGES[kind]
    value: int | None = None
    if isinstance(data, int) and not isinstance(data, bool):
        value = data
    elif isinstance(data, str) and kind in _WIDE_256:
        match = _INT_TEXT_RE.fullmatch(data)
        if match:
            digits = match.group(2)
            value = int(digits, 16) if digits.startswith("0x") else int(digits)
            value = -value if match.group(1) else value
    if value is None:
        expected = f'{kind.name} (integer or "0x…" string)' if kind in _WIDE_256 else f"{kind.name} (integer)"
        raise SatsJsonError(path, expected, data)
    if not low <= value <= high:
        raise SatsJsonError(path, f"{kind.name} in {low}..={high}", data)
    return value


def _bytes_in(data: Any, path: str) -> bytes:
    if isinstance(data, str):
        match = _HEX_RE.fullmatch(data)
        if match is None:
            raise SatsJsonError(path, "bytes as an even-length hex string", data)
        return bytes.fromhex(match.group(1))
    if isinstance(data, list):
        for i, item in enumerate(data):
            if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= 255:
                raise SatsJsonError(f"{path}[{i}]", "U8 (integer)", item)
        return bytes(data)
    raise SatsJsonError(path, "bytes (hex string or array of U8)", data)


def _special_in(tag: str, ty: ProductType, data: Any, path: str) -> Any:
    cls, _, kind = _SPECIAL_CLASSES[tag]
    if isinstance(data, dict) and set(data) == {tag}:
        raw, inner_path = data[tag], f"{path}.{tag}"
    elif isinstance(data, list) and len(data) == 1:
        raw, inner_path = data[0], f"{path}[0]"
    else:
        raise SatsJsonError(path, f'{_type_name(ty)} as {{"{tag}": …}}', data)
    return cls(_primitive_in(kind, raw, inner_path))


def _product_in(
    ty: ProductType, data: Any, typespace: Sequence[AlgebraicType], path: str, depth: int
) -> tuple[Any, ...]:
    names = ty.field_names()
    if isinstance(data, list):
        if len(data) != len(names):
            raise SatsJsonError(path, f"{len(names)} elements: [{', '.join(names)}]", data)
        return tuple(
            _in(e.type, item, typespace, f"{path}[{i}]", depth + 1)
            for i, (e, item) in enumerate(zip(ty.elements, data, strict=True))
        )
    if isinstance(data, dict):
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise SatsJsonError(path, f"fields {list(names)}", f"unknown field {unknown[0]!r}")
        missing = [name for name in names if name not in data]
        if missing:
            raise SatsJsonError(path, f"fields {list(names)}", f"object missing field {missing[0]!r}")
        return tuple(
            _in(e.type, data[n], typespace, f"{path}.{n}", depth + 1) for e, n in zip(ty.elements, names, strict=True)
        )
    raise SatsJsonError(path, _type_name(ty), data)


def _variant_tag(ty: SumType, key: Any, path: str) -> int:
    if isinstance(key, int) and not isinstance(key, bool):
        tag = key
    elif isinstance(key, str) and key.isdigit():
        tag = int(key)
    elif isinstance(key, str):
        try:
            return ty.tag_of(key)
        except KeyError:
            raise SatsJsonError(path, _type_name(ty), f"unknown variant {key!r}") from None
    else:
        raise SatsJsonError(path, "a variant name or tag", key)
    if not 0 <= tag < len(ty.variants):
        raise SatsJsonError(path, _type_name(ty), f"variant tag {tag} (type has {len(ty.variants)})")
    return tag


def _sum_in(ty: SumType, data: Any, typespace: Sequence[AlgebraicType], path: str, depth: int) -> Any:
    option = is_option(ty)
    if data is None and option:
        return None
    if isinstance(data, dict) and len(data) == 1:
        ((key, payload),) = data.items()
        tag = _variant_tag(ty, key, path)
        inner_path = f"{path}.{ty.variants[tag].name or tag}"
    elif isinstance(data, list) and len(data) == 2:
        key, payload = data
        tag = _variant_tag(ty, key, f"{path}[0]")
        inner_path = f"{path}[1]"
    else:
        raise SatsJsonError(path, f'{_type_name(ty)} as {{"variant": payload}}', data)
    value = _in(ty.variants[tag].type, payload, typespace, inner_path, depth + 1)
    if option:
        return None if tag == 1 else value
    return SumValue(tag, value)
