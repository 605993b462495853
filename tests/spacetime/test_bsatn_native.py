"""The compiled product codec (`_bsatn.c`) answers exactly as the Python codec it stands beside.

Each test runs the C program and the pure-Python twin (`bsatn.python_codec`) on the same input and compares what
came out: the bytes or the values, or the exception's type and text. Malformed input is the attack surface, so
random, truncated and mutated bytes are compared too, and odd values (subclasses, out-of-range integers, text
UTF-8 cannot encode) on the encode side.
"""

from __future__ import annotations

import collections
from importlib.util import find_spec
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from spacetime_strategies import LEAF_TYPES, product_of, products, products_and_values
from test_bsatn_product_encoder import _Tuple, with_odd_fields

from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime.values import ConnectionId, Identity, TimeDuration, Timestamp

pytestmark = pytest.mark.skipif(not bsatn.NATIVE, reason="_bsatn.c was not compiled here (the Python codec runs)")


def _native(ty: at.AlgebraicType, typespace: tuple[at.AlgebraicType, ...] = ()) -> bsatn.NativeCodec:
    found = bsatn.codec(ty, typespace)
    assert isinstance(found, bsatn.NativeCodec)
    return found


def _encoded(encode: Any, value: Any) -> tuple[str, Any]:
    try:
        return "bytes", encode(value)
    except Exception as exc:  # every refusal is compared, by type and text
        return "error", (type(exc), str(exc))


def _into(encoder: bsatn.Encoder, value: Any) -> tuple[str, Any]:
    out = bytearray(b"head")
    try:
        encoder(out, value)
    except Exception as exc:
        return "error", (type(exc), str(exc))
    return "bytes", bytes(out)


def _decoded(codec: bsatn.Codec, data: bytes, offset: int = 0) -> tuple[str, Any]:
    try:
        value, end = codec.decode_prefix(data, offset)
    except Exception as exc:
        return "error", (type(exc), str(exc))
    return "value", (repr(value), end)  # repr: a NaN read from hostile bytes is equal to itself this way


def test_the_compiled_codec_is_the_one_used_where_it_was_built() -> None:
    assert (find_spec("autopilot_sync.spacetime._bsatn") is not None) is bsatn.NATIVE


def test_the_sync_modules_row_and_argument_types_run_compiled() -> None:
    from autopilot_sync import sync_bindings as sb

    for name in ("SyncEvent", "StreamHead", "AppendSyncEventsBatchItem"):
        assert isinstance(sb._codec(name), bsatn.NativeCodec), name


@settings(max_examples=300)
@given(products_and_values())
def test_any_product_value_encodes_and_decodes_as_the_python_codec(case: tuple[at.ProductType, Any]) -> None:
    ty, value = case
    native, python = _native(ty), bsatn.python_codec(ty)
    data = python.encode(value)
    assert native.encode(value) == data
    assert _into(native.encoder, value) == _into(python.encoder, value)
    assert native.decode(data) == value == python.decode(data)
    assert _decoded(native, b"xy" + data, 2) == _decoded(python, b"xy" + data, 2)
    assert _decoded(native, memoryview(data)) == _decoded(python, memoryview(data))


@given(products_and_values(), st.data())
def test_a_value_with_odd_fields_meets_the_same_answer_from_both(
    case: tuple[at.ProductType, Any], data: st.DataObject
) -> None:
    ty, value = case
    fields = with_odd_fields(value, data)
    native, python = _native(ty), bsatn.python_codec(ty)
    named = collections.namedtuple("Row", ty.field_names())
    for candidate in (
        tuple(fields),
        _Tuple(fields),
        named(*fields),
        fields,
        dict(zip(ty.field_names(), fields, strict=True)),
    ):
        assert _encoded(native.encode, candidate) == _encoded(python.encode, candidate)
        assert _into(native.encoder, candidate) == _into(python.encoder, candidate)


@settings(max_examples=300)
@given(products_and_values(), st.data())
def test_truncated_and_mutated_bytes_meet_the_same_answer_from_both(
    case: tuple[at.ProductType, Any], data: st.DataObject
) -> None:
    ty, value = case
    native, python = _native(ty), bsatn.python_codec(ty)
    encoded = python.encode(value)
    for end in range(len(encoded)):
        assert _decoded(native, encoded[:end]) == _decoded(python, encoded[:end])
    if encoded:
        mutated = bytearray(encoded)
        for _ in range(data.draw(st.integers(1, 3))):
            mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
        assert _decoded(native, bytes(mutated)) == _decoded(python, bytes(mutated))


@given(products, st.binary(max_size=64), st.integers(-2, 70))
def test_random_bytes_at_any_offset_meet_the_same_answer_from_both(ty: at.ProductType, raw: bytes, offset: int) -> None:
    assert _decoded(_native(ty), raw, offset) == _decoded(bsatn.python_codec(ty), raw, offset)


class _Backwards(tuple[Any, ...]):
    """A tuple subclass that iterates its own way: the Python encoder unpacks through `__iter__`, so C must not
    read its storage directly."""

    def __iter__(self) -> Any:
        return iter(list(tuple.__iter__(self))[::-1])


def test_a_tuple_subclass_that_iterates_its_own_way_is_encoded_as_the_python_codec_does() -> None:
    ty = product_of([at.U8, at.STRING])
    assert _encoded(_native(ty).encode, _Backwards((1, "a"))) == _encoded(
        bsatn.python_codec(ty).encode, _Backwards((1, "a"))
    )


@pytest.mark.parametrize("leaf", LEAF_TYPES, ids=repr)
def test_bad_utf8_and_short_input_raise_the_python_codecs_error(leaf: at.AlgebraicType) -> None:
    ty = product_of([at.STRING, leaf])
    native, python = _native(ty), bsatn.python_codec(ty)
    for raw in (b"\x02\x00\x00\x00\xc3\x28", b"\x01\x00\x00\x00\xed", b"\x05\x00\x00\x00ab", b""):
        assert _decoded(native, raw) == _decoded(python, raw)
        assert _decoded(native, raw)[0] == "error"
    empty = b"\x00\x00\x00\x00"  # an empty string, then whatever the leaf makes of no bytes
    assert _decoded(native, empty) == _decoded(python, empty)


def test_length_prefixes_larger_than_the_input_raise_the_python_codecs_error() -> None:
    for field in (at.STRING, at.BYTES, at.array(at.U32), at.array(at.UNIT)):
        ty = product_of([field])
        native, python = _native(ty), bsatn.python_codec(ty)
        for raw in (b"\xff\xff\xff\xff", b"\xff\xff\xff\x7fab", b"\x01\x00\x10\x00"):
            assert _decoded(native, raw) == _decoded(python, raw)
            assert _decoded(native, raw)[0] == "error"


def test_a_recursive_type_stays_on_the_python_codec() -> None:
    typespace = (at.product(("next", at.option(at.RefType(0))), ("n", at.U8)),)
    recursive = bsatn.codec(at.RefType(0), typespace)
    assert not isinstance(recursive, bsatn.NativeCodec)
    assert recursive.decode(b"\x00\x01\x05\x02") == ((None, 5), 2)


def test_special_products_decode_to_objects_equal_to_the_class_built_ones() -> None:
    ty = product_of([at.TIMESTAMP, at.IDENTITY, at.CONNECTION_ID, at.TIME_DURATION])
    value = (Timestamp(-5), Identity((1 << 255) + 3), ConnectionId(7), TimeDuration(1 << 62))
    data = bsatn.python_codec(ty).encode(value)
    assert _native(ty).encode(value) == data
    decoded = _native(ty).decode(data)
    assert decoded == value and hash(decoded) == hash(value)
    assert [type(v) for v in decoded] == [type(v) for v in value]
    assert [v.hex for v in decoded[1:3]] == [v.hex for v in value[1:3]]
