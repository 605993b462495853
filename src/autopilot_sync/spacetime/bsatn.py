"""BSATN: SpacetimeDB's binary encoding of algebraic values.

Each type description is compiled once into a pair of closures (encoder, decoder) and cached, because the host
encodes every row of every transaction and the client decodes every row it receives: interpretation per value would
dominate both. Decoding never trusts its input: every failure is a `DecodeError`.

Value conventions (see `values.py`): integers are `int`, floats `float`, strings `str`, `Array<U8>` is `bytes`, other
arrays are `list`, products are `tuple` (a `dict` keyed by field names is accepted when encoding), sums are
`SumValue` except `Option<T>` which is `None` or the value, and the special products decode to `Identity`,
`ConnectionId`, `Timestamp` and `TimeDuration`.

Where `_bsatn.c` was compiled (`hatch_build.py`), every product type whose fields it covers (all but recursive
types) also gets a C program that decodes and encodes it with no Python step per field; the Python codec compiled
here stays its twin and runs for every input or value the C walk does not take exactly as Python does, so the
answers and the errors are the Python codec's (docs/performance.md "Round 7 — nativecodec").
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from autopilot_sync.spacetime.algebraic import (
    CONNECTION_ID_TAG,
    IDENTITY_TAG,
    TIME_DURATION_TAG,
    TIMESTAMP_TAG,
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
from autopilot_sync.spacetime.errors import DecodeError
from autopilot_sync.spacetime.values import ConnectionId, Identity, SumValue, TimeDuration, Timestamp

_native: ModuleType | None
try:
    from autopilot_sync.spacetime import _bsatn as _native
except ImportError:  # not compiled on this machine (no C compiler at install): the Python codec runs alone
    _native = None

Buffer = bytes | bytearray | memoryview
Encoder = Callable[[bytearray, Any], None]
Decoder = Callable[[Buffer, int], tuple[Any, int]]

#: The most values one input may decode from no bytes: the elements of every array whose elements may encode to
#: zero bytes (e.g. `Vec<()>`), weighted by the values each element holds (`zero_weight`), added up over the whole
#: input, nested arrays included. One budget per top-level decode, not one per array: per array, `Vec<Vec<()>>` let
#: each 4-byte inner length ask for the whole limit, so 260 bytes decoded to 67 million list slots (docs/protocol.md
#: "Limits and liveness"). An element that takes bytes is bounded by the input's length instead.
MAX_ZERO_SIZE_ELEMENTS = 1 << 20
#: What is left of an input's `MAX_ZERO_SIZE_ELEMENTS`: a one-item list every decoder of that input charges, handed
#: down as a decoder's third argument by the decoders of types that hold such an array (`Codec.budgeted`).
Budget = list[int]

_FIXED: dict[PrimitiveKind, struct.Struct] = {
    PrimitiveKind.I8: struct.Struct("<b"),
    PrimitiveKind.U8: struct.Struct("<B"),
    PrimitiveKind.I16: struct.Struct("<h"),
    PrimitiveKind.U16: struct.Struct("<H"),
    PrimitiveKind.I32: struct.Struct("<i"),
    PrimitiveKind.U32: struct.Struct("<I"),
    PrimitiveKind.I64: struct.Struct("<q"),
    PrimitiveKind.U64: struct.Struct("<Q"),
    PrimitiveKind.F32: struct.Struct("<f"),
    PrimitiveKind.F64: struct.Struct("<d"),
}
_WIDE: dict[PrimitiveKind, tuple[int, bool]] = {
    PrimitiveKind.I128: (16, True),
    PrimitiveKind.U128: (16, False),
    PrimitiveKind.I256: (32, True),
    PrimitiveKind.U256: (32, False),
}
_U32 = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class Codec:
    """Compiled encoder and decoder for one type.

    `budgeted`: the type holds an array of zero-size elements somewhere, so `decoder` takes an optional third
    argument, the input's `Budget` (a parent decoding it as part of a larger value passes its own; without one the
    decoder starts a fresh budget: a top-level decode). Other decoders take two arguments.
    """

    encoder: Encoder
    decoder: Decoder
    budgeted: bool = False

    def encode(self, value: Any) -> bytes:
        """BSATN bytes of `value`; raises ValueError/TypeError when the value does not fit the type."""
        out = bytearray()
        self.encoder(out, value)
        return bytes(out)

    def encode_into(self, out: bytearray, value: Any) -> None:
        """Append the encoding of `value` to `out`."""
        self.encoder(out, value)

    def decode(self, data: Buffer) -> Any:
        """Decode exactly one value occupying all of `data`."""
        value, end = self.decode_prefix(data, 0)
        if end != len(data):
            raise DecodeError(f"{len(data) - end} trailing bytes after value")
        return value

    def decode_prefix(self, data: Buffer, offset: int) -> tuple[Any, int]:
        """Decode one value starting at `offset`; returns it and the offset after it."""
        try:
            return self.decoder(data, offset)
        except DecodeError:
            raise
        except (struct.error, IndexError) as exc:
            raise DecodeError(f"truncated input: {exc}") from None


@dataclass(frozen=True, slots=True)
class NativeCodec(Codec):
    """A product's codec run by its C program (`encoder`/`decoder` are the program's), the Python twin behind it."""

    program: Any = None

    def encode(self, value: Any) -> bytes:
        """BSATN bytes of `value`, built in C (the Python encoder runs, and raises, for anything C does not take)."""
        data: bytes = self.program.encode(value)
        return data


#: Whether product codecs run compiled programs (`_bsatn`, built by `hatch_build.py`); False: the Python codec only.
NATIVE = _native is not None
#: The deepest type a C program describes (`MAX_DEPTH` in `_bsatn.c` is 64); a deeper type stays in Python.
_NATIVE_MAX_DEPTH = 48
#: The C program's node kinds (the enum at the top of `_bsatn.c`, in order).
_KIND: dict[PrimitiveKind, int] = {
    kind: code
    for code, kind in enumerate(
        [
            PrimitiveKind.BOOL,
            PrimitiveKind.I8,
            PrimitiveKind.U8,
            PrimitiveKind.I16,
            PrimitiveKind.U16,
            PrimitiveKind.I32,
            PrimitiveKind.U32,
            PrimitiveKind.I64,
            PrimitiveKind.U64,
            PrimitiveKind.F32,
            PrimitiveKind.F64,
            PrimitiveKind.I128,
            PrimitiveKind.U128,
            PrimitiveKind.I256,
            PrimitiveKind.U256,
            PrimitiveKind.STRING,
        ]
    )
}
_K_BYTES, _K_ARRAY, _K_PRODUCT, _K_OPTION, _K_SUM = 16, 17, 18, 19, 20
_K_SPECIAL = {IDENTITY_TAG: 21, CONNECTION_ID_TAG: 22, TIMESTAMP_TAG: 23, TIME_DURATION_TAG: 24}
if _native is not None:
    _native.configure(SumValue, Identity, ConnectionId, Timestamp, TimeDuration)


class _UncoveredError(Exception):
    """A type the C program does not describe (a recursive or too deep one): its product stays in Python."""


def _describe(
    ty: AlgebraicType, typespace: Sequence[AlgebraicType], depth: int = 0, refs: frozenset[int] = frozenset()
) -> Any:
    """The C program's description of `ty`: nested tuples `(kind, ...)` mirroring what `_Compiler` builds.

    `refs` are the references being followed: meeting one again means a recursive type, which stays in Python.
    """
    if depth > _NATIVE_MAX_DEPTH:
        raise _UncoveredError
    deeper = depth + 1
    if isinstance(ty, Primitive):
        return (_KIND[ty.kind],)
    if isinstance(ty, ArrayType):
        if ty.element == Primitive(PrimitiveKind.U8):
            return (_K_BYTES,)
        element = _describe(ty.element, typespace, deeper, refs)
        return (_K_ARRAY, _min_size(ty.element, typespace), zero_weight(ty.element, typespace), element)
    if isinstance(ty, ProductType):
        tag = special_tag(ty)
        if tag is not None:
            return (_K_SPECIAL[tag],)
        return (_K_PRODUCT, tuple(_describe(e.type, typespace, deeper, refs) for e in ty.elements))
    if isinstance(ty, SumType):
        if is_option(ty):
            return (_K_OPTION, _describe(ty.variants[0].type, typespace, deeper, refs))
        if len(ty.variants) > 256:
            raise _UncoveredError
        return (_K_SUM, tuple(_describe(v.type, typespace, deeper, refs) for v in ty.variants))
    if isinstance(ty, RefType) and 0 <= ty.index < len(typespace) and ty.index not in refs:
        return _describe(typespace[ty.index], typespace, deeper, refs | {ty.index})
    raise _UncoveredError


def _with_program(
    build_python: Callable[[], Codec], ty: ProductType, typespace: Sequence[AlgebraicType], budgeted: bool
) -> Codec:
    """The codec `build_python` makes, or, where `_bsatn` was compiled and covers `ty`, a C program with that
    codec behind it, built only when the program first hands it an input or value (the generated functions'
    `exec` is most of a type's compile, and a host compiles every table's codec before `ready`)."""
    if _native is None:
        return build_python()
    try:
        description = _describe(ty, typespace)
    except _UncoveredError:
        return build_python()
    built: list[Codec] = []

    def python() -> Codec:
        if not built:
            built.append(build_python())
        return built[0]

    def python_encoder(out: bytearray, value: Any) -> None:
        python().encoder(out, value)

    def python_decoder(data: Buffer, offset: int, *budget: Budget) -> tuple[Any, int]:
        return python().decoder(data, offset, *budget)  # a budget only when budgeted

    program = _native.Program(description, python_encoder, python_decoder)
    return NativeCodec(program.encode_into, program.decode, budgeted=budgeted, program=program)


def _need(data: Buffer, offset: int, size: int) -> None:
    if offset + size > len(data):
        raise DecodeError(f"truncated input: need {size} bytes at offset {offset}, have {len(data) - offset}")


def _min_size(ty: AlgebraicType, typespace: Sequence[AlgebraicType], depth: int = 0) -> int:
    """Smallest possible encoding of `ty`, used to reject length prefixes larger than the input allows."""
    if depth > 32:
        return 0
    if isinstance(ty, Primitive):
        if ty.kind is PrimitiveKind.STRING:
            return 4
        if ty.kind is PrimitiveKind.BOOL:
            return 1
        if ty.kind in _WIDE:
            return _WIDE[ty.kind][0]
        return _FIXED[ty.kind].size
    if isinstance(ty, ArrayType):
        return 4
    if isinstance(ty, ProductType):
        return sum(_min_size(e.type, typespace, depth + 1) for e in ty.elements)
    if isinstance(ty, SumType):
        return 1 + min((_min_size(v.type, typespace, depth + 1) for v in ty.variants), default=0)
    if isinstance(ty, RefType):
        return _min_size(typespace[ty.index], typespace, depth + 1) if ty.index < len(typespace) else 0
    return 0


def zero_weight(ty: AlgebraicType, typespace: Sequence[AlgebraicType], depth: int = 0) -> int:
    """The values one zero-byte element of `ty` decodes into: 1, plus its fields' for a product (an array of 1,000
    elements of `((), ())` builds 3,000); what an array of such elements charges per element to the input's budget.
    Capped at `MAX_ZERO_SIZE_ELEMENTS + 1` (one such element is already over any budget)."""
    if depth > 32:
        return 1
    if isinstance(ty, RefType) and 0 <= ty.index < len(typespace):
        return zero_weight(typespace[ty.index], typespace, depth + 1)
    if isinstance(ty, ProductType) and special_tag(ty) is None:
        fields = sum(zero_weight(e.type, typespace, depth + 1) for e in ty.elements)
        return min(1 + fields, MAX_ZERO_SIZE_ELEMENTS + 1)
    return 1


def _holds_zero_size_array(ty: AlgebraicType, typespace: Sequence[AlgebraicType]) -> bool:
    """Whether decoding `ty` may meet an array whose elements may encode to zero bytes (through any nesting and
    reference): the types whose decoders charge, or hand down, an input's budget."""
    seen: set[int] = set()
    pending = [ty]
    while pending:
        current = pending.pop()
        if isinstance(current, ArrayType):
            if current.element != Primitive(PrimitiveKind.U8) and _min_size(current.element, typespace) == 0:
                return True
            pending.append(current.element)
        elif isinstance(current, ProductType):
            pending.extend(e.type for e in current.elements)
        elif isinstance(current, SumType):
            pending.extend(v.type for v in current.variants)
        elif isinstance(current, RefType) and 0 <= current.index < len(typespace) and current.index not in seen:
            seen.add(current.index)
            pending.append(typespace[current.index])
    return False


def _zero_size_refused(count: int, weight: int, budget: Budget) -> DecodeError:
    """The one error for an array of zero-size elements past what is left of its input's budget."""
    return DecodeError(
        f"array length {count} over the limit of {MAX_ZERO_SIZE_ELEMENTS} zero-size values per input"
        f" ({weight} per element, {budget[0]} left)"
    )


class _Compiler:
    def __init__(self, typespace: Sequence[AlgebraicType], native: bool = True) -> None:
        self.typespace = tuple(typespace)
        self.native = native
        self.refs: dict[int, Codec] = {}
        self.holds: dict[AlgebraicType, bool] = {}

    def budgeted(self, ty: AlgebraicType) -> bool:
        """`_holds_zero_size_array` for `ty`, once per type."""
        found = self.holds.get(ty)
        if found is None:
            found = self.holds[ty] = _holds_zero_size_array(ty, self.typespace)
        return found

    def compile(self, ty: AlgebraicType) -> Codec:
        if isinstance(ty, Primitive):
            return self._primitive(ty.kind)
        if isinstance(ty, ArrayType):
            return self._array(ty)
        if isinstance(ty, ProductType):
            return self._product(ty)
        if isinstance(ty, SumType):
            return self._sum(ty)
        if isinstance(ty, RefType):
            return self._ref(ty)
        raise TypeError(f"not an algebraic type: {ty!r}")

    def _ref(self, ty: RefType) -> Codec:
        if ty.index in self.refs:
            return self.refs[ty.index]
        if not 0 <= ty.index < len(self.typespace):
            raise ValueError(f"type reference {ty.index} outside the typespace of {len(self.typespace)} types")
        slot: list[Codec] = []

        def enc(out: bytearray, value: Any) -> None:
            slot[0].encoder(out, value)

        def dec(data: Buffer, offset: int, *budget: Budget) -> tuple[Any, int]:
            return slot[0].decoder(data, offset, *budget)  # a budget only when budgeted

        lazy = Codec(enc, dec, self.budgeted(self.typespace[ty.index]))
        self.refs[ty.index] = lazy
        target = self.compile(self.typespace[ty.index])
        slot.append(target)
        if isinstance(target, NativeCodec):  # not recursive: the program itself, no Python frame in front of it
            self.refs[ty.index] = target
            return target
        return lazy

    def _primitive(self, kind: PrimitiveKind) -> Codec:
        if kind is PrimitiveKind.BOOL:
            return Codec(_enc_bool, _dec_bool)
        if kind is PrimitiveKind.STRING:
            return Codec(_enc_str, _dec_str)
        if kind in _FIXED:
            return _fixed_codec(_FIXED[kind], kind)
        size, signed = _WIDE[kind]
        return _wide_codec(size, signed)

    def _array(self, ty: ArrayType) -> Codec:
        if ty.element == Primitive(PrimitiveKind.U8):
            return Codec(_enc_bytes, _dec_bytes)
        elem = self.compile(ty.element)
        enc_elem, dec_elem = elem.encoder, elem.decoder
        min_elem = _min_size(ty.element, self.typespace)

        def enc(out: bytearray, value: Any) -> None:
            if not isinstance(value, list | tuple):
                raise TypeError(f"array value must be a list, got {type(value).__name__}")
            out += _U32.pack(len(value))
            for item in value:
                enc_elem(out, item)

        def dec(data: Buffer, offset: int) -> tuple[Any, int]:
            _need(data, offset, 4)
            (count,) = _U32.unpack_from(data, offset)
            offset += 4
            if count * min_elem > len(data) - offset:
                raise DecodeError(f"array length {count} exceeds the {len(data) - offset} bytes left")
            items = []
            for _ in range(count):
                item, offset = dec_elem(data, offset)
                items.append(item)
            return items, offset

        if min_elem and not elem.budgeted:  # bounded by the input's length: no budget to keep
            return Codec(enc, dec)
        weight = zero_weight(ty.element, self.typespace) if not min_elem else 0
        budgeted_elem = elem.budgeted

        def dec_budgeted(data: Buffer, offset: int, budget: Budget | None = None) -> tuple[Any, int]:
            _need(data, offset, 4)
            (count,) = _U32.unpack_from(data, offset)
            offset += 4
            if budget is None:
                budget = [MAX_ZERO_SIZE_ELEMENTS]
            if min_elem:
                if count * min_elem > len(data) - offset:
                    raise DecodeError(f"array length {count} exceeds the {len(data) - offset} bytes left")
            elif count * weight > budget[0]:
                raise _zero_size_refused(count, weight, budget)
            else:
                budget[0] -= count * weight
            items = []
            for _ in range(count):
                if budgeted_elem:
                    item, offset = dec_elem(data, offset, budget)  # type: ignore[call-arg]  # a budgeted decoder
                else:
                    item, offset = dec_elem(data, offset)
                items.append(item)
            return items, offset

        return Codec(enc, dec_budgeted, True)

    def _product(self, ty: ProductType) -> Codec:
        tag = special_tag(ty)
        if tag is not None:
            return _SPECIAL[tag]
        fields = [self.compile(e.type) for e in ty.elements]
        encoders = [f.encoder for f in fields]
        decoders = [f.decoder for f in fields]
        budgeted = [f.budgeted for f in fields]
        names = ty.field_names()
        arity = len(fields)

        def enc(out: bytearray, value: Any) -> None:
            if isinstance(value, dict):
                try:
                    value = tuple(value[name] for name in names)
                except KeyError as exc:
                    raise ValueError(f"product value is missing field {exc.args[0]!r}") from None
            if not isinstance(value, tuple | list) or len(value) != arity:
                raise ValueError(f"product value must have {arity} fields, got {value!r:.80}")
            for encoder, item in zip(encoders, value, strict=True):
                encoder(out, item)

        types = [self._resolve(e.type) for e in ty.elements]

        def python() -> Codec:
            decoder = _product_decoder(types, decoders, budgeted)
            return Codec(_product_encoder(types, encoders, enc), decoder, any(budgeted))

        return _with_program(python, ty, self.typespace, any(budgeted)) if self.native else python()

    def _resolve(self, ty: AlgebraicType) -> AlgebraicType:
        """Follow references (a bounded number: a cycle is left as a reference) to see what a field inlines to."""
        for _ in range(32):
            if not isinstance(ty, RefType) or not 0 <= ty.index < len(self.typespace):
                return ty
            ty = self.typespace[ty.index]
        return ty

    def _sum(self, ty: SumType) -> Codec:
        variants = [self.compile(v.type) for v in ty.variants]
        count = len(variants)
        budgeted = any(v.budgeted for v in variants)
        if is_option(ty):
            some = variants[0]

            def enc_opt(out: bytearray, value: Any) -> None:
                if value is None:
                    out.append(1)
                else:
                    out.append(0)
                    some.encoder(out, value)

            def dec_opt(data: Buffer, offset: int) -> tuple[Any, int]:
                _need(data, offset, 1)
                tag = data[offset]
                if tag == 1:
                    return None, offset + 1
                if tag == 0:
                    return some.decoder(data, offset + 1)
                raise DecodeError(f"invalid Option tag {tag}")

            def dec_opt_budgeted(data: Buffer, offset: int, budget: Budget | None = None) -> tuple[Any, int]:
                _need(data, offset, 1)
                tag = data[offset]
                if tag == 1:
                    return None, offset + 1
                if tag == 0:
                    return some.decoder(data, offset + 1, budget)  # type: ignore[call-arg]  # `some` is budgeted
                raise DecodeError(f"invalid Option tag {tag}")

            return Codec(enc_opt, dec_opt_budgeted, True) if budgeted else Codec(enc_opt, dec_opt)

        def enc(out: bytearray, value: Any) -> None:
            if not isinstance(value, SumValue):
                raise TypeError(f"sum value must be a SumValue, got {type(value).__name__}")
            if not 0 <= value.tag < count:
                raise ValueError(f"sum tag {value.tag} outside 0..{count - 1}")
            out.append(value.tag)
            variants[value.tag].encoder(out, value.value)

        def dec(data: Buffer, offset: int) -> tuple[Any, int]:
            _need(data, offset, 1)
            tag = data[offset]
            if tag >= count:
                raise DecodeError(f"invalid sum tag {tag} (type has {count} variants)")
            payload, offset = variants[tag].decoder(data, offset + 1)
            return SumValue(tag, payload), offset

        def dec_budgeted(data: Buffer, offset: int, budget: Budget | None = None) -> tuple[Any, int]:
            _need(data, offset, 1)
            tag = data[offset]
            if tag >= count:
                raise DecodeError(f"invalid sum tag {tag} (type has {count} variants)")
            variant = variants[tag]
            if variant.budgeted:
                payload, offset = variant.decoder(data, offset + 1, budget)  # type: ignore[call-arg]
            else:
                payload, offset = variant.decoder(data, offset + 1)
            return SumValue(tag, payload), offset

        return Codec(enc, dec_budgeted, True) if budgeted else Codec(enc, dec)


_STRUCT_CHAR: dict[PrimitiveKind, str] = {kind: fmt.format[-1] for kind, fmt in _FIXED.items()}
_TIME_CLASSES: dict[str, type] = {TIMESTAMP_TAG: Timestamp, TIME_DURATION_TAG: TimeDuration}


def _product_decoder(
    types: Sequence[AlgebraicType], decoders: Sequence[Decoder], budgeted: Sequence[bool] = ()
) -> Decoder:
    """One generated function decoding a whole product, with no call per field where the field allows.

    Every row the client receives and every reducer argument list the host reads is a product, and dispatching each
    field through its own closure (with its own bounds check) was most of the client's catch-up time. Fixed-size
    fields next to each other (integers, floats, `Timestamp`, `TimeDuration`) are read with one `struct` call,
    strings and byte arrays inline with one explicit bounds check; other fields call their compiled decoder. The
    source is built only from field positions and struct formats (no names from the schema), so any schema
    compiles. Errors stay as before: a short input raises `struct.error`/`IndexError` (made a `DecodeError` by
    `Codec.decode_prefix`) or `DecodeError` directly, bad UTF-8 a `DecodeError`. Where a field is `budgeted`, the
    function takes the input's budget as a third argument (a fresh one when none is given) and hands it to those
    fields' decoders.
    """
    namespace: dict[str, Any] = {"DecodeError": DecodeError, "U32": _U32.unpack_from, "len": len, "str": str}
    namespace["MAX_ZERO"] = MAX_ZERO_SIZE_ELEMENTS
    lines: list[str] = []
    pending: list[tuple[int, str, str | None]] = []  # (field, struct char, class to wrap in)

    def flush(length_next: bool = False) -> bool:
        """Read the pending fixed fields, and with them the next field's u32 length prefix when it has one."""
        if not pending:
            return False
        fmt = struct.Struct("<" + "".join(char for _, char, _ in pending) + ("I" if length_next else ""))
        name = f"S{pending[0][0]}"
        namespace[name] = fmt.unpack_from
        targets = ", ".join([f"v{i}" for i, _, _ in pending] + (["n"] if length_next else []))
        lines.append(f"    {targets}, = {name}(data, o)")
        lines.append(f"    o += {fmt.size}")
        for i, _, wrap in pending:
            if wrap is not None:
                lines.append(f"    v{i} = {wrap}(v{i})")
        pending.clear()
        return True

    for i, ty in enumerate(types):
        tag = special_tag(ty)
        if isinstance(ty, Primitive) and ty.kind in _STRUCT_CHAR:
            pending.append((i, _STRUCT_CHAR[ty.kind], None))
            continue
        if tag in _TIME_CLASSES:
            namespace[f"C{i}"] = _TIME_CLASSES[tag]
            pending.append((i, "q", f"C{i}"))
            continue
        is_str = isinstance(ty, Primitive) and ty.kind is PrimitiveKind.STRING
        if is_str or ty == ArrayType(Primitive(PrimitiveKind.U8)):
            if not flush(length_next=True):
                lines.append("    (n,) = U32(data, o)")
                lines.append("    o += 4")
            lines.append("    e = o + n")
            lines.append("    if e > size:")
            lines.append(f"        raise DecodeError(f'truncated input: field {i} needs {{n}} bytes at offset {{o}}')")
            lines.append(f"    v{i} = str(data[o:e], 'utf-8')" if is_str else f"    v{i} = bytes(data[o:e])")
            lines.append("    o = e")
        else:
            flush()
            namespace[f"d{i}"] = decoders[i]
            lines.append(
                f"    v{i}, o = d{i}(data, o, b)"
                if i < len(budgeted) and budgeted[i]
                else f"    v{i}, o = d{i}(data, o)"
            )
    flush()
    if not lines:
        lines.append("    pass")
    values = "".join(f"v{i}, " for i in range(len(types)))
    takes_budget = any(budgeted)
    source = "\n".join(
        [
            "def dec(data, o, b=None):" if takes_budget else "def dec(data, o):",
            *(["  if b is None:", "    b = [MAX_ZERO]"] if takes_budget else []),
            "  size = len(data)",
            "  try:",
            *(" " + line for line in lines),
            "  except UnicodeDecodeError as exc:",
            "    raise DecodeError(f'invalid UTF-8 in string: {exc.reason}') from None",
            f"  return ({values}), o",
        ]
    )
    exec(compile(source, "<bsatn product decoder>", "exec"), namespace)  # the source holds positions and formats only
    decoder: Decoder = namespace["dec"]
    return decoder


_TIME_ATTRS: dict[str, tuple[type, str]] = {
    TIMESTAMP_TAG: (Timestamp, "micros"),
    TIME_DURATION_TAG: (TimeDuration, "micros"),
}


def _product_encoder(types: Sequence[AlgebraicType], encoders: Sequence[Encoder], generic: Encoder) -> Encoder:
    """One generated function encoding a whole product, with no call per simple field (the decoder's twin).

    The host encodes every row it stores (a 100-event append encodes 100 `sync_event` rows) and a producer every
    event of its batch; dispatching each field through its own closure, with its own checks, was most of that. The
    generated function takes a tuple of the right length whose simple fields have exactly the builtin type the
    generic encoder accepts (`str`, `bytes`, `int` for integers, `float` for floats, `bool`, `Timestamp` and
    `TimeDuration` holding an `int`): strings are encoded inline and every run of fixed-size fields is packed with
    one `struct` call together with the next string's length. Anything else — a dict, a list, a subclass, a value
    of another type, an integer out of range or a string UTF-8 cannot encode — goes to `generic`, the per-field
    encoder (after a failed pack the output is first cut back), so what is accepted, the bytes and every error are
    exactly the generic encoder's.
    The source is built from field positions and struct formats only (no names from the schema).
    """
    namespace: dict[str, Any] = {"generic": generic, "isinstance": isinstance, "tuple": tuple, "type": type}
    namespace.update({"len": len, "str": str, "bytes": bytes, "int": int, "float": float, "bool": bool})
    namespace["StructError"] = struct.error
    guards: list[str] = []
    lines: list[str] = []
    fmt: list[str] = []
    args: list[str] = []

    def flush() -> None:
        if not fmt:
            return
        packer = struct.Struct("<" + "".join(fmt))
        name = f"P{len(lines)}"
        namespace[name] = packer.pack
        lines.append(f"out += {name}({', '.join(args)})")
        fmt.clear()
        args.clear()

    for i, ty in enumerate(types):
        tag = special_tag(ty)
        if isinstance(ty, Primitive) and ty.kind in _STRUCT_CHAR:
            is_float = ty.kind in (PrimitiveKind.F32, PrimitiveKind.F64)
            guards.append(f"type(v{i}) is {'float' if is_float else 'int'}")
            fmt.append(_STRUCT_CHAR[ty.kind])
            args.append(f"v{i}")
        elif isinstance(ty, Primitive) and ty.kind is PrimitiveKind.BOOL:
            guards.append(f"type(v{i}) is bool")
            fmt.append("?")
            args.append(f"v{i}")
        elif tag in _TIME_ATTRS:
            cls, attr = _TIME_ATTRS[tag]
            namespace[f"C{i}"] = cls
            guards.append(f"type(v{i}) is C{i} and type(v{i}.{attr}) is int")
            fmt.append("q")
            args.append(f"v{i}.{attr}")
        elif isinstance(ty, Primitive) and ty.kind is PrimitiveKind.STRING:
            guards.append(f"type(v{i}) is str")
            lines.append(f"b{i} = v{i}.encode('utf-8')")
            fmt.append("I")
            args.append(f"len(b{i})")
            flush()
            lines.append(f"out += b{i}")
        elif ty == ArrayType(Primitive(PrimitiveKind.U8)):
            guards.append(f"type(v{i}) is bytes")
            fmt.append("I")
            args.append(f"len(v{i})")
            flush()
            lines.append(f"out += v{i}")
        else:
            flush()
            namespace[f"e{i}"] = encoders[i]
            lines.append(f"e{i}(out, v{i})")
    flush()
    arity = len(types)
    if arity == 0:
        return generic
    unpack = "".join(f"v{i}, " for i in range(arity))
    source = "\n".join(
        [
            "def enc(out, value):",
            f"  if not isinstance(value, tuple) or len(value) != {arity}:",
            "    return generic(out, value)",
            f"  {unpack}= value",
            f"  if not ({' and '.join(guards) or 'True'}):",
            "    return generic(out, value)",
            "  start = len(out)",
            "  try:",
            *(f"    {line}" for line in lines),
            "  except (OverflowError, StructError, UnicodeEncodeError):",
            "    del out[start:]",
            "    generic(out, value)",
        ]
    )
    exec(compile(source, "<bsatn product encoder>", "exec"), namespace)  # the source holds positions and formats
    encoder: Encoder = namespace["enc"]
    return encoder


def _enc_bool(out: bytearray, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"bool value expected, got {type(value).__name__}")
    out.append(1 if value else 0)


def _dec_bool(data: Buffer, offset: int) -> tuple[Any, int]:
    _need(data, offset, 1)
    byte = data[offset]
    if byte > 1:
        raise DecodeError(f"invalid bool byte {byte}")
    return byte == 1, offset + 1


def _enc_str(out: bytearray, value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"str value expected, got {type(value).__name__}")
    raw = value.encode("utf-8")
    out += _U32.pack(len(raw))
    out += raw


def _dec_str(data: Buffer, offset: int) -> tuple[Any, int]:
    _need(data, offset, 4)
    (size,) = _U32.unpack_from(data, offset)
    offset += 4
    _need(data, offset, size)
    try:
        text = bytes(data[offset : offset + size]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"invalid UTF-8 in string: {exc.reason}") from None
    return text, offset + size


def _enc_bytes(out: bytearray, value: Any) -> None:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"bytes value expected, got {type(value).__name__}")
    out += _U32.pack(len(value))
    out += value


def _dec_bytes(data: Buffer, offset: int) -> tuple[Any, int]:
    _need(data, offset, 4)
    (size,) = _U32.unpack_from(data, offset)
    offset += 4
    _need(data, offset, size)
    return bytes(data[offset : offset + size]), offset + size


def _fixed_codec(fmt: struct.Struct, kind: PrimitiveKind) -> Codec:
    pack, unpack_from, size = fmt.pack, fmt.unpack_from, fmt.size
    is_float = kind in (PrimitiveKind.F32, PrimitiveKind.F64)

    def enc(out: bytearray, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, float | int if is_float else int):
            raise TypeError(f"{kind.name} value expected, got {type(value).__name__}")
        try:
            out += pack(value)
        except (struct.error, OverflowError) as exc:
            raise ValueError(f"{value!r} does not fit {kind.name}: {exc}") from None

    def dec(data: Buffer, offset: int) -> tuple[Any, int]:
        _need(data, offset, size)
        return unpack_from(data, offset)[0], offset + size

    return Codec(enc, dec)


def _wide_codec(size: int, signed: bool) -> Codec:
    def enc(out: bytearray, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"int value expected, got {type(value).__name__}")
        try:
            out += value.to_bytes(size, "little", signed=signed)
        except OverflowError:
            raise ValueError(
                f"{value} does not fit a {'signed' if signed else 'unsigned'} {size * 8}-bit int"
            ) from None

    def dec(data: Buffer, offset: int) -> tuple[Any, int]:
        _need(data, offset, size)
        return int.from_bytes(data[offset : offset + size], "little", signed=signed), offset + size

    return Codec(enc, dec)


def _special(cls: type, attr: str, inner: Codec) -> Codec:
    def enc(out: bytearray, value: Any) -> None:
        if not isinstance(value, cls):
            raise TypeError(f"{cls.__name__} value expected, got {type(value).__name__}")
        inner.encoder(out, getattr(value, attr))

    def dec(data: Buffer, offset: int) -> tuple[Any, int]:
        raw, offset = inner.decoder(data, offset)
        return cls(raw), offset

    return Codec(enc, dec)


_SPECIAL: dict[str, Codec] = {
    IDENTITY_TAG: _special(Identity, "value", _wide_codec(32, False)),
    CONNECTION_ID_TAG: _special(ConnectionId, "value", _wide_codec(16, False)),
    TIMESTAMP_TAG: _special(Timestamp, "micros", _fixed_codec(_FIXED[PrimitiveKind.I64], PrimitiveKind.I64)),
    TIME_DURATION_TAG: _special(TimeDuration, "micros", _fixed_codec(_FIXED[PrimitiveKind.I64], PrimitiveKind.I64)),
}

_CACHE: dict[tuple[AlgebraicType, tuple[AlgebraicType, ...]], Codec] = {}


def codec(ty: AlgebraicType, typespace: Sequence[AlgebraicType] = ()) -> Codec:
    """The compiled codec for `ty`, resolving references against `typespace`; cached per (type, typespace)."""
    key = (ty, tuple(typespace))
    found = _CACHE.get(key)
    if found is None:
        found = _Compiler(key[1]).compile(ty)
        _CACHE[key] = found
    return found


def python_codec(ty: AlgebraicType, typespace: Sequence[AlgebraicType] = ()) -> Codec:
    """The pure-Python codec for `ty` (never a C program; not cached): the twin the property tests hold C to."""
    return _Compiler(tuple(typespace), native=False).compile(ty)


def encode(ty: AlgebraicType, value: Any, typespace: Sequence[AlgebraicType] = ()) -> bytes:
    """BSATN bytes of `value` as type `ty`."""
    return codec(ty, typespace).encode(value)


def decode(ty: AlgebraicType, data: Buffer, typespace: Sequence[AlgebraicType] = ()) -> Any:
    """Decode exactly one value of type `ty` occupying all of `data`."""
    return codec(ty, typespace).decode(data)
