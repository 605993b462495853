"""Checking a list of BSATN rows without decoding them: the same verdict as the decoder, without its objects.

The client keeps a received row's bytes and decodes it only when someone reads it (a catch-up of 10,000 events
is applied and counted without building 10,000 row objects); yet no row may enter the cache unless it would
decode. A checker generated here walks each row the way the product decoder (`bsatn._product_decoder`) does —
fixed-size fields skipped by their size, each string or byte array by its u32 length, with the same bounds
checks — and collects the strings' bytes, which are checked for UTF-8 in one call per row list. It builds no
value. Only products whose every field is a fixed-size number, `Timestamp`, `TimeDuration`, string or `bytes` get
a checker (the shapes of event rows); for any other shape `row_list_checker` answers None and the caller decodes.

A failure only says "does not decode": callers then run the decoder itself for its exact error message.

`packed_checker` answers the same question for a row list as it arrives (one buffer and the rows' start offsets)
through `_rowlist`, the same walk compiled in C (built at install by `hatch_build.py`), which also splits the rows:
~50x less CPU per row list (docs/performance.md "Round 5 — catchup2"). Where the extension was not built it falls
back to the generated Python checker over the split rows; `NATIVE` says which one runs.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

from autopilot_sync.spacetime.algebraic import (
    TIME_DURATION_TAG,
    TIMESTAMP_TAG,
    AlgebraicType,
    ArrayType,
    Primitive,
    PrimitiveKind,
    ProductType,
    RefType,
    special_tag,
)
from autopilot_sync.spacetime.bsatn import MAX_ZERO_SIZE_ELEMENTS, zero_weight
from autopilot_sync.spacetime.rowlist import BsatnRowList, FixedSize, RowSizeHint

_native_check: Callable[[bytes, Sequence[int], Sequence[int]], list[bytes] | None] | None
try:
    from autopilot_sync.spacetime._rowlist import check as _native_check
except ImportError:  # not compiled on this machine (no C compiler at install): the Python checker runs
    _native_check = None

#: Checks every row of a list; raises `RowsDoNotDecodeError` when one of them would not decode.
RowListChecker = Callable[[Sequence[bytes]], None]
#: The same for a row list as received: answers its rows split (as `BsatnRowList.rows`), raises as above.
PackedRowListChecker = Callable[[BsatnRowList], list[bytes]]
#: Whether the compiled checker (`_rowlist`) is the one `packed_checker` uses.
NATIVE = _native_check is not None
#: The most fields the compiled checker walks (`MAX_FIELDS` in `_rowlist.c`); a wider row type is checked in Python.
NATIVE_MAX_FIELDS = 256

_FIXED_SIZE: dict[PrimitiveKind, int] = {
    PrimitiveKind.I8: 1,
    PrimitiveKind.U8: 1,
    PrimitiveKind.I16: 2,
    PrimitiveKind.U16: 2,
    PrimitiveKind.I32: 4,
    PrimitiveKind.U32: 4,
    PrimitiveKind.I64: 8,
    PrimitiveKind.U64: 8,
    PrimitiveKind.F32: 4,
    PrimitiveKind.F64: 8,
}
_U32 = struct.Struct("<I")


class RowsDoNotDecodeError(Exception):
    """Some row of the list would not decode (truncated, trailing bytes, or invalid UTF-8)."""


def _resolve(ty: AlgebraicType, typespace: Sequence[AlgebraicType]) -> AlgebraicType:
    for _ in range(32):
        if not isinstance(ty, RefType) or not 0 <= ty.index < len(typespace):
            return ty
        ty = typespace[ty.index]
    return ty


def _field_size(ty: AlgebraicType) -> int | None:
    """Bytes of a fixed-size field, -1 for a string, -2 for a byte array, None for a shape not handled."""
    if isinstance(ty, Primitive):
        if ty.kind is PrimitiveKind.STRING:
            return -1
        return _FIXED_SIZE.get(ty.kind)
    if special_tag(ty) in (TIMESTAMP_TAG, TIME_DURATION_TAG):
        return 8
    if ty == ArrayType(Primitive(PrimitiveKind.U8)):
        return -2
    return None


def row_layout(row_type: ProductType, typespace: Sequence[AlgebraicType]) -> tuple[int, ...] | None:
    """Each field's size in order (-1 a string, -2 a byte array), or None when a field has a shape not handled."""
    sizes = [_field_size(_resolve(element.type, typespace)) for element in row_type.elements]
    if any(size is None for size in sizes):
        return None
    return tuple(size for size in sizes if size is not None)


def rows_starts(hint: RowSizeHint) -> Sequence[int]:
    """Each row's start offset for a `RowOffsets` hint (none for `FixedSize(0)`, which carries no rows)."""
    return () if isinstance(hint, FixedSize) else hint.offsets


def packed_checker(row_type: ProductType, typespace: Sequence[AlgebraicType]) -> PackedRowListChecker | None:
    """A checker for a packed list of rows of `row_type` (compiled when built), or None for a shape not handled."""
    layout = row_layout(row_type, typespace)
    fallback = row_list_checker(row_type, typespace)
    if layout is None or fallback is None:
        return None
    native = _native_check
    if native is None or len(layout) > NATIVE_MAX_FIELDS:

        def check_split(rows: BsatnRowList) -> list[bytes]:
            raws = rows.rows()
            fallback(raws)
            return raws

        return check_split

    def check_packed(rows: BsatnRowList) -> list[bytes]:
        hint, data = rows.size_hint, rows.rows_data
        starts = range(0, len(data), hint.size) if isinstance(hint, FixedSize) and hint.size else rows_starts(hint)
        raws = native(data, starts, layout)
        if raws is None:
            raise RowsDoNotDecodeError
        return raws

    return check_packed


def row_list_checker(row_type: ProductType, typespace: Sequence[AlgebraicType]) -> RowListChecker | None:
    """A checker for rows of `row_type`, or None when a field has a shape the checker does not handle."""
    sizes = row_layout(row_type, typespace)
    if sizes is None:
        return None
    lines: list[str] = []
    spans: list[str] = []
    fixed = 0
    at = "0"  # the offset after the last variable-size field, as source: 0 until there is one
    for i, size in enumerate(sizes):
        if size >= 0:
            fixed += size
            continue
        # No bounds check per field: a length running past the row makes the next length read fail
        # (`struct.error`) or the final offset differ from the row's size.
        base = f"{at} + {fixed}" if at != "0" else str(fixed)
        lines.append(f"            (n,) = U32(data, {base})")
        lines.append(f"            a{i} = {base} + 4")
        lines.append(f"            e{i} = a{i} + n")
        if size == -1:
            spans.append(f"data[a{i}:e{i}]")
        at, fixed = f"e{i}", 0
    lines.append(f"            if {at} + {fixed} != size:" if at != "0" else f"            if {fixed} != size:")
    lines.append("                raise Bad")
    if spans:
        lines.append(f"            strings(({', '.join(spans)},))")
    source = "\n".join(
        [
            "def check(rows):",
            "    parts = []",
            "    strings = parts.extend",
            "    try:",
            "        for data in rows:",
            "            size = len(data)",
            *lines,
            "    except struct_error:",
            "        raise Bad from None",
            *_UTF8_CHECK_LINES,
        ]
    )
    checker: RowListChecker = _compiled_check(source, "<bsatn row list checker>")
    return checker


#: The generated checkers' last step: the strings they kept, joined, decoded once. Each string is followed by an
#: ASCII NUL in the joined text, so a string that ends inside a character, or starts with a continuation byte, fails
#: the one decode as it would alone.
_UTF8_CHECK_LINES = (
    "    text = NUL.join(parts)",
    "    if not text.isascii():",
    "        try:",
    "            str(text, 'utf-8')",
    "        except UnicodeDecodeError:",
    "            raise Bad from None",
)


def _compiled_check(source: str, label: str) -> Any:
    """The `check` function a generated source defines (positions and sizes only: nothing of the input is run)."""
    namespace: dict[str, Any] = {"U32": _U32.unpack_from, "Bad": RowsDoNotDecodeError, "struct_error": struct.error}
    namespace["NUL"] = b"\x00"
    exec(compile(source, label, "exec"), namespace)
    return namespace["check"]


#: Checks a reducer's BSATN argument bytes; raises `RowsDoNotDecodeError` when they would not decode.
ArgsChecker = Callable[[bytes], None]


def _min_bytes(layout: Sequence[int]) -> int:
    """The fewest bytes a product of `layout` takes (a string or byte array at least its u32 length)."""
    return sum(size if size >= 0 else 4 for size in layout)


def _walk_lines(layout: Sequence[int], indent: str) -> list[str]:
    """Source walking one product of `layout` from offset `o`: fixed fields skipped, its strings' bytes kept (one
    `extend` per product)."""
    lines: list[str] = []
    spans: list[str] = []
    fixed = 0
    for i, size in enumerate(layout):
        if size >= 0:
            fixed += size
            continue
        lines.append(f"{indent}(n,) = U32(data, o + {fixed})" if fixed else f"{indent}(n,) = U32(data, o)")
        lines.append(f"{indent}a{i} = o + {fixed + 4}")
        lines.append(f"{indent}o = e{i} = a{i} + n")
        fixed = 0
        if size == -1:
            spans.append(f"data[a{i}:e{i}]")
    if fixed:
        lines.append(f"{indent}o += {fixed}")
    if spans:
        lines.append(f"{indent}keep(({', '.join(spans)},))")
    return lines


def args_checker(params: ProductType, typespace: Sequence[AlgebraicType]) -> ArgsChecker | None:
    """A checker for a reducer's argument bytes, with the verdict of the parameters' `Codec.decode_prefix`, or None
    when a parameter has a shape not handled.

    Why: a TypeScript module's reducer decodes its arguments itself, in its runner; the host only has to refuse bytes
    that would not decode before they get there (`host/js_module.py`), and decoding a 100-event batch to throw the
    values away was ~7% of the host's CPU per call (docs/performance.md "Round 6 — jstwin2"). Handled: parameters
    that are row fields (`row_layout`) or arrays of products of them (the sync module's `append_sync_events`
    batch). Like `decode_prefix`, bytes after the value are not looked at; arrays of empty products charge the one
    budget of `MAX_ZERO_SIZE_ELEMENTS` the decoder keeps for the whole argument list.
    """
    lines: list[str] = []
    for element in params.elements:
        ty = _resolve(element.type, typespace)
        size = _field_size(ty)
        if size is not None:
            lines.extend(_walk_lines((size,), "        "))
            continue
        if not isinstance(ty, ArrayType):
            return None
        item = _resolve(ty.element, typespace)
        if not isinstance(item, ProductType):
            return None
        layout = row_layout(item, typespace)
        if layout is None:
            return None
        least = _min_bytes(layout)
        lines.append("        (count,) = U32(data, o)")
        lines.append("        o += 4")
        if least:  # as the decoder: a count the bytes left cannot hold is refused before walking it
            lines.append(f"        if count * {least} > size - o:")
            lines.append("            raise Bad")
        else:  # as the decoder: one budget of zero-size values for all the parameters
            lines.append(f"        budget -= count * {zero_weight(item, typespace)}")
            lines.append("        if budget < 0:")
            lines.append("            raise Bad")
        lines.append("        for _ in range(count):")
        lines.extend(_walk_lines(layout, "            ") or ["            pass"])
    source = "\n".join(
        [
            "def check(data):",
            "    parts = []",
            "    keep = parts.extend",
            "    size = len(data)",
            "    o = 0",
            f"    budget = {MAX_ZERO_SIZE_ELEMENTS}",
            "    try:",
            *(lines or ["        pass"]),  # a reducer without parameters: nothing to read
            "    except struct_error:",
            "        raise Bad from None",
            "    if o > size:",  # a string or fixed field running past the end (slices do not raise)
            "        raise Bad",
            *_UTF8_CHECK_LINES,
        ]
    )
    checker: ArgsChecker = _compiled_check(source, "<bsatn argument checker>")
    return checker
