"""Hostile input against the C code at the trust boundary (`_bsatn.c`, `_rowlist.c`), heavier than the property
tests beside it, and meant to run under AddressSanitizer + UBSan (`scripts/sanitize-native.sh`).

In the normal suite these are ordinary tests (C and Python must give the same answer, nothing may crash); under
the sanitizer the same cases also prove no out-of-bounds read or write, no use after free and no undefined
behaviour on the way to that answer. `NATIVE_FUZZ_SCALE` (set by the script) multiplies the number of cases.

Shapes covered: products nested up to six deep and eight wide, options, sums (unit variants included), arrays of
arrays, 128/256-bit integers, floats, strings and byte arrays, the special products; bytes truncated at every
offset, mutated (flipped bytes, lengths near 2^32 spliced in, bytes dropped or repeated), read from bytes, bytearray
and memoryview at odd offsets; hostile Python values on the encode side (subclasses of int/str/bytes/list/tuple
with odd `__index__`/`__len__`/`__iter__`, objects whose `__eq__`/`__hash__` raise, huge integers, values nested
past the recursion limit); the row-list checker's and packer's arguments, including sequences that change under
their own `__index__`.
"""

from __future__ import annotations

import functools
import os
import random
import struct
import sys
from array import array
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from spacetime_strategies import LEAF_TYPES, values_of

from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn, bsatn_check
from autopilot_sync.spacetime.values import ConnectionId, Identity, SumValue, TimeDuration, Timestamp

pytestmark = pytest.mark.skipif(
    not (bsatn.NATIVE and bsatn_check.NATIVE), reason="the C extensions were not compiled here (Python runs)"
)

#: The multiplier of every fuzz loop's case count (scripts/sanitize-native.sh sets it; 1 in the normal suite).
SCALE = max(1, int(os.environ.get("NATIVE_FUZZ_SCALE", "1")))
#: Lengths near the u32 limit, spliced into inputs where a length prefix may stand.
HOSTILE_LENGTHS = (0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFC, 0x80000000, 0x7FFFFFFF, 0x40000000, 0x00100001, 0x00100000)


def _product(children: list[at.AlgebraicType]) -> at.ProductType:
    return at.product(*((f"f{i}", ty) for i, ty in enumerate(children)))


def _sum(children: list[at.AlgebraicType]) -> at.SumType:
    return at.sum_type(*((f"v{i}", ty) for i, ty in enumerate(children)))


def _deeper(children: st.SearchStrategy[at.AlgebraicType]) -> st.SearchStrategy[at.AlgebraicType]:
    return st.one_of(
        st.lists(children, max_size=8).map(_product),
        st.lists(children, min_size=1, max_size=5).map(_sum),
        children.map(at.array),
        children.map(at.array).map(at.array),  # arrays of arrays
        children.filter(lambda ty: not at.is_option(ty)).map(at.option),
    )


deep_types = st.recursive(st.sampled_from(LEAF_TYPES), _deeper, max_leaves=30)
deep_products = st.lists(deep_types, min_size=1, max_size=8).map(_product)


@st.composite
def deep_products_and_values(draw: st.DrawFn) -> tuple[at.ProductType, Any]:
    ty = draw(deep_products)
    return ty, draw(values_of(ty))


@functools.lru_cache(maxsize=512)
def _pair(ty: at.ProductType) -> tuple[bsatn.Codec, bsatn.Codec]:
    native = bsatn.codec(ty)
    assert isinstance(native, bsatn.NativeCodec), ty
    return native, bsatn.python_codec(ty)


def _decoded(codec: bsatn.Codec, data: Any, offset: int = 0) -> tuple[str, Any]:
    try:
        value, end = codec.decode_prefix(data, offset)
    except Exception as exc:  # every refusal is compared, by type and text
        return "error", (type(exc), str(exc))
    return "value", (repr(value), end)  # repr: a NaN read from hostile bytes is equal to itself this way


def _encoded(codec: bsatn.Codec, value: Any) -> tuple[str, Any]:
    out = bytearray(b"head")
    try:
        codec.encoder(out, value)
        whole = codec.encode(value)
    except RecursionError:
        return "error", (RecursionError, "")  # where the limit is met depends on the frames in between
    except Exception as exc:
        return "error", (type(exc), str(exc))
    assert bytes(out[4:]) == whole
    return "bytes", whole


def _same_decode(native: bsatn.Codec, python: bsatn.Codec, data: bytes, offset: int = 0) -> None:
    assert _decoded(native, data, offset) == _decoded(python, data, offset), (data.hex(), offset)


def _mutants(rng: random.Random, data: bytes, count: int) -> list[bytes]:
    """`count` hostile variants of `data`: bytes flipped or set to edges, u32 lengths near 2^32 written over any
    offset, bytes dropped, spans repeated, the tail cut."""
    found: list[bytes] = []
    for _ in range(count):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            how = rng.randrange(5)
            at_ = rng.randrange(len(mutated) + 1)
            if how == 0 and mutated:
                mutated[min(at_, len(mutated) - 1)] = rng.choice(
                    (0, 1, 2, 0x7F, 0x80, 0xC0, 0xED, 0xFF, rng.randrange(256))
                )
            elif how == 1:
                mutated[at_ : at_ + 4] = struct.pack("<I", rng.choice(HOSTILE_LENGTHS))
            elif how == 2 and mutated:
                del mutated[min(at_, len(mutated) - 1)]
            elif how == 3:
                span = bytes(mutated[at_ : at_ + rng.randint(1, 8)])
                mutated[at_:at_] = span * rng.randint(1, 4)
            else:
                del mutated[at_:]
        found.append(bytes(mutated))
    return found


@settings(max_examples=80 * SCALE)
@given(deep_products_and_values(), st.randoms(use_true_random=False))
def test_bytes_cut_at_every_offset_and_mutated_meet_the_python_codecs_answer(
    case: tuple[at.ProductType, Any], rng: random.Random
) -> None:
    ty, value = case
    native, python = _pair(ty)
    data = python.encode(value)
    assert native.encode(value) == data
    for end in range(len(data) + 1):
        _same_decode(native, python, data[:end])
    for mutated in _mutants(rng, data, 24):
        _same_decode(native, python, mutated)
        assert _decoded(native, bytearray(mutated)) == _decoded(python, bytearray(mutated))
        shifted = b"\xff" * 3 + mutated
        assert _decoded(native, memoryview(shifted)[3:]) == _decoded(python, memoryview(shifted)[3:])
        _same_decode(native, python, shifted, 3)


@settings(max_examples=40 * SCALE)
@given(deep_products, st.binary(max_size=96), st.integers(-3, 100))
def test_random_bytes_at_any_offset_meet_the_python_codecs_answer(ty: at.ProductType, raw: bytes, offset: int) -> None:
    native, python = _pair(ty)
    _same_decode(native, python, raw, offset)


VARIABLE_FIELDS = [
    at.STRING,
    at.BYTES,
    *(at.array(leaf) for leaf in LEAF_TYPES),
    at.array(at.array(at.UNIT)),
    at.array(at.array(at.U256)),
    at.array(at.option(at.STRING)),
    at.array(_sum([at.UNIT, at.I128])),
    at.option(at.array(at.STRING)),
]


@pytest.mark.parametrize("field", VARIABLE_FIELDS, ids=repr)
def test_length_prefixes_near_two_to_the_32_are_refused_as_the_python_codec_refuses(field: at.AlgebraicType) -> None:
    for ty in (_product([field]), _product([at.U8, field, at.STRING])):
        native, python = _pair(ty)
        for length in HOSTILE_LENGTHS:
            prefix = struct.pack("<I", length)
            # at exactly MAX_ZERO_SIZE_ELEMENTS an array of units decodes (2^20 items): once is enough
            at_limit = length == bsatn.MAX_ZERO_SIZE_ELEMENTS
            for tail in (b"",) if at_limit else (b"", b"\x00", b"\x00" * 4, b"\x01" * 64, b"\x00\x01\x00\x00\x00" * 20):
                for head in (b"",) if at_limit else (b"", b"\x07", b"\x00", b"\x07" + prefix):
                    _same_decode(native, python, head + prefix + tail)
                    _same_decode(native, python, b"\x00" * 5 + head + prefix + tail, 5)


# ------------------------------------------------------------------------------------------------ hostile values


class _IndexRaises(int):
    def __index__(self) -> int:
        raise RuntimeError("index")


class _EqHashRaise(int):
    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq")

    def __hash__(self) -> int:
        raise RuntimeError("hash")


class _HugeLenStr(str):
    def __len__(self) -> int:
        return 1 << 40


class _HugeLenBytes(bytes):
    def __len__(self) -> int:
        return 1 << 33


class _LyingList(list[Any]):
    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Any:
        yield from (1, 2, 3)


class _LyingTuple(tuple[Any, ...]):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: Any) -> Any:
        raise RuntimeError("getitem")


class _IndexOnly:
    def __index__(self) -> int:
        return 5


class _SumSub(SumValue):
    pass


class _StampSub(Timestamp):
    pass


def _forged(cls: type, **fields: Any) -> Any:
    """An instance of a frozen value class with fields its constructor would refuse."""
    made = object.__new__(cls)
    for name, value in fields.items():
        object.__setattr__(made, name, value)
    return made


def _self_containing() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def hostile_values() -> list[Any]:
    """Values no honest caller builds, each meant to reach a different branch of C's type and range checks."""
    return [
        None,
        True,
        False,
        0,
        -1,
        1 << 63,
        (1 << 64) - 1,
        1 << 64,
        -(1 << 63) - 1,
        (1 << 255) - 1,
        1 << 255,
        (1 << 256) - 1,
        1 << 256,
        -(1 << 255),
        -(1 << 255) - 1,
        1 << 100000,
        _IndexRaises(3),
        _EqHashRaise(3),
        _IndexOnly(),
        0.0,
        -0.0,
        float("nan"),
        float("inf"),
        -float("inf"),
        3.4028235677973366e38,
        3.4028234663852886e38,
        1e39,
        -1e39,
        5e-324,
        "",
        "ascii",
        "é" * 300,
        "\ud800",
        "a\udfffb",
        "x" * 70000,
        _HugeLenStr("abc"),
        b"",
        b"\x00\xff",
        bytearray(b"ab"),
        memoryview(b"ab"),
        _HugeLenBytes(b"ab"),
        [],
        [1, 2, 3],
        ["a", None],
        [[], [1]],
        _LyingList([1]),
        _LyingTuple((1, 2)),
        (),
        (1,),
        (1, "a"),
        _self_containing(),
        _nested(5000),
        {"f0": 1},
        {1, 2},
        iter([1]),
        object(),
        SumValue(0, ()),
        SumValue(1, 5),
        SumValue(255, None),
        SumValue(256, None),
        SumValue(-1, None),
        SumValue(1 << 70, None),
        SumValue(True, ()),
        SumValue(_IndexOnly(), ()),  # type: ignore[arg-type]
        _forged(SumValue, tag="0", value=()),
        _forged(SumValue, tag=0),
        _SumSub(0, ()),
        Identity(0),
        Identity((1 << 256) - 1),
        _forged(Identity, value=-1),
        _forged(Identity, value=1 << 256),
        _forged(Identity, value="x"),
        _forged(Identity),
        ConnectionId((1 << 128) - 1),
        _forged(ConnectionId, value=1 << 128),
        Timestamp(-(1 << 63)),
        _forged(Timestamp, micros=1 << 63),
        _forged(Timestamp, micros=1.5),
        _forged(TimeDuration, micros=_IndexRaises(1)),
        _StampSub(5),
        TimeDuration(1),
    ]


HOSTILE_TARGETS = [
    *LEAF_TYPES,
    at.array(at.I32),
    at.array(at.array(at.U8)),
    at.array(at.array(at.STRING)),
    at.option(at.I128),
    at.option(at.array(at.U256)),
    _sum([at.UNIT, at.I64, at.STRING]),
    _sum([at.array(at.UNIT)]),
    _product([at.U8, at.STRING]),
]


@pytest.mark.parametrize("field", HOSTILE_TARGETS, ids=repr)
def test_hostile_values_meet_the_python_encoders_answer(field: at.AlgebraicType) -> None:
    ty = _product([field])
    wide = _product([at.U8, field, at.array(field)])
    native, python = _pair(ty)
    native_wide, python_wide = _pair(wide)
    for value in hostile_values():
        assert _encoded(native, (value,)) == _encoded(python, (value,)), value
        assert _encoded(native, value) == _encoded(python, value)
        row = (1, value, [value, value])
        assert _encoded(native_wide, row) == _encoded(python_wide, row)


@settings(max_examples=40 * SCALE)
@given(deep_products_and_values(), st.randoms(use_true_random=False))
def test_a_value_with_hostile_leaves_anywhere_meets_the_python_encoders_answer(
    case: tuple[at.ProductType, Any], rng: random.Random
) -> None:
    ty, value = case
    native, python = _pair(ty)
    catalogue = hostile_values()

    def spoil(node: Any) -> Any:
        if rng.random() < 0.15:
            return rng.choice(catalogue)
        if isinstance(node, tuple):
            return tuple(spoil(item) for item in node)
        if isinstance(node, list):
            return [spoil(item) for item in node]
        if isinstance(node, SumValue):
            return SumValue(node.tag, spoil(node.value))
        return node

    for _ in range(6):
        spoiled = spoil(value)
        assert _encoded(native, spoiled) == _encoded(python, spoiled)


def test_a_value_nested_past_the_recursion_limit_is_refused_without_a_crash() -> None:
    ty = _product([at.array(at.array(at.array(at.I32)))])
    native, python = _pair(ty)
    deep = _nested(sys.getrecursionlimit() * 3)
    assert _encoded(native, (deep,)) == _encoded(python, (deep,))
    assert _encoded(native, (deep,))[0] == "error"


def test_an_encode_into_a_buffer_that_cannot_grow_meets_the_python_encoders_answer() -> None:
    ty = _product([at.STRING])
    native, python = _pair(ty)
    for codec in (native, python):
        out = bytearray(b"x")
        view = memoryview(out)  # an export: the bytearray cannot be resized
        with pytest.raises(BufferError):
            codec.encoder(out, ("abc",))
        view.release()
        codec.encoder(out, ("abc",))
        assert bytes(out) == b"x\x03\x00\x00\x00abc"


# ---------------------------------------------------------------------------------------------------- row lists

LAYOUT_SIZES = (0, 1, 2, 4, 8, 16, 32, -1, -2)
STRING_BYTES = (
    b"",
    b"a",
    "é".encode(),
    "€".encode(),
    "😀".encode(),
    b"\xc3",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xc0\xaf",
    b"\xe0\x80\xaf",
    b"\xff",
    b"abcdefgh\x80",
    b"abcdefghijklmnop",
)


def _rows_ok_reference(data: bytes, starts: list[int], layout: list[int]) -> list[bytes] | None:
    """What `_rowlist.check` must answer, written plainly: each row walked field by field."""
    rows: list[bytes] = []
    previous = 0
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(data)
        if start < previous or start > end or end > len(data):
            return None
        pos = start
        for size in layout:
            if size >= 0:
                pos += size
                if pos > end:
                    return None
                continue
            if end - pos < 4:
                return None
            (length,) = struct.unpack_from("<I", data, pos)
            pos += 4
            if length > end - pos:
                return None
            if size == -1:
                try:
                    data[pos : pos + length].decode("utf-8")
                except UnicodeDecodeError:
                    return None
            pos += length
        if pos != end:
            return None
        previous = start
        rows.append(data[start:end])
    return rows


def _random_row(rng: random.Random, layout: list[int]) -> bytes:
    row = bytearray()
    for size in layout:
        if size >= 0:
            row += rng.randbytes(size)
        else:
            body = b"".join(rng.choice(STRING_BYTES) for _ in range(rng.randint(0, 3)))
            row += struct.pack("<I", len(body)) + body
    return bytes(row)


def test_the_row_list_checker_meets_the_plain_walk_on_random_and_mutated_rows() -> None:
    rng = random.Random(2026)
    for _ in range(400 * SCALE):
        layout = [rng.choice(LAYOUT_SIZES) for _ in range(rng.randint(0, 6))]
        rows = [_random_row(rng, layout) for _ in range(rng.randint(0, 6))]
        data = b"".join(rows)
        starts = [sum(len(r) for r in rows[:i]) for i in range(len(rows))]
        assert bsatn_check._native_check is not None
        check = bsatn_check._native_check
        assert check(data, starts, layout) == _rows_ok_reference(data, starts, layout)
        for mutated in _mutants(rng, data, 6):
            assert check(mutated, starts, layout) == _rows_ok_reference(mutated, starts, layout)
        if starts:
            moved = list(starts)
            moved[rng.randrange(len(moved))] = rng.choice(
                (-1, 0, len(data), len(data) + 1, rng.randrange(len(data) + 2))
            )
            assert check(data, moved, layout) == _rows_ok_reference(data, moved, layout)
            assert check(data, tuple(moved), tuple(layout)) == _rows_ok_reference(data, moved, layout)
            assert check(bytearray(data), range(0, 0), layout) == []


class _IndexFails:
    def __index__(self) -> int:
        raise RuntimeError("index")


def test_row_list_arguments_of_the_wrong_kind_raise_typed_errors() -> None:
    assert bsatn_check._native_check is not None
    check = bsatn_check._native_check
    for starts, layout, error in (
        ([0], [-3], ValueError),
        ([0], [0] * 257, ValueError),
        ([0], ["4"], TypeError),
        (["0"], [4], TypeError),
        ([1 << 70], [4], OverflowError),
        ([0], [1 << 70], OverflowError),
        ([0], [_IndexFails()], RuntimeError),
        ([_IndexFails()], [4], TypeError),
        (5, [4], TypeError),
        ([0], None, TypeError),
    ):
        with pytest.raises(error):
            check(b"abcd", starts, layout)
    with pytest.raises(TypeError):
        check("abcd", [0], [4])  # type: ignore[arg-type]


def _pack_reference(buf: bytes, prefix: bytes, seqs: list[int], spans: list[tuple[int, int]]) -> Any:
    rows = [
        prefix + struct.pack("<Q", seq) + buf[begin:finish] for seq, (begin, finish) in zip(seqs, spans, strict=True)
    ]
    data = b"".join(rows)
    if len({len(row) for row in rows}) <= 1:
        return data, len(rows[0]) if rows else 0
    offsets, at_ = [], 0
    for row in rows:
        offsets.append(at_)
        at_ += len(row)
    return data, tuple(offsets)


def test_packing_a_run_meets_the_plain_join_and_refuses_spans_outside_the_buffer() -> None:
    from autopilot_sync.spacetime._rowlist import pack_run

    rng = random.Random(21)
    for _ in range(300 * SCALE):
        buf = rng.randbytes(rng.randint(0, 64))
        prefix = rng.randbytes(rng.choice((0, 1, 7, 8, 33)))
        count = rng.randint(0, 8)
        seqs = [rng.choice((0, 1, (1 << 64) - 1, rng.getrandbits(64))) for _ in range(count)]
        spans = []
        for _ in range(count):
            begin = rng.randint(0, len(buf))
            spans.append((begin, rng.randint(begin, len(buf))))
        begins, finishes = array("Q", [b for b, _ in spans]), array("Q", [f for _, f in spans])
        assert pack_run(buf, prefix, array("Q", seqs), begins, finishes) == _pack_reference(buf, prefix, seqs, spans)
        if count:
            bad = array("Q", finishes)
            k = rng.randrange(count)
            bad[k] = rng.choice((len(buf) + 1, (1 << 64) - 1, begins[k] - 1 if begins[k] else len(buf) + 9))
            with pytest.raises(ValueError):
                pack_run(buf, prefix, array("Q", seqs), begins, bad)


def test_under_the_sanitizer_the_sanitized_build_is_the_one_tested() -> None:
    scratch = os.environ.get("NATIVE_SANITIZED_DIR")
    if not scratch:
        pytest.skip("not run by scripts/sanitize-native.sh")
    from autopilot_sync.spacetime import _bsatn, _rowlist

    assert (_bsatn.__file__ or "").startswith(scratch) and (_rowlist.__file__ or "").startswith(scratch)
