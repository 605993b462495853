"""Properties of the BSATN codec over arbitrary types: round trips, and hostile bytes only ever raise DecodeError."""

from __future__ import annotations

import contextlib
import struct
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from spacetime_strategies import algebraic_types, typed_values, values_of

from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime.errors import DecodeError


@given(typed_values())
def test_decode_inverts_encode_for_any_type(case: tuple[at.AlgebraicType, Any]) -> None:
    ty, value = case
    data = bsatn.encode(ty, value)
    assert bsatn.decode(ty, data) == value
    assert bsatn.encode(ty, bsatn.decode(ty, data)) == data


@given(typed_values())
def test_every_truncation_of_a_valid_encoding_is_a_decode_error(case: tuple[at.AlgebraicType, Any]) -> None:
    ty, value = case
    data = bsatn.encode(ty, value)
    for end in range(len(data)):
        with pytest.raises(DecodeError):
            bsatn.decode(ty, data[:end])


@given(typed_values(), st.binary(min_size=1, max_size=8))
def test_trailing_bytes_are_a_decode_error(case: tuple[at.AlgebraicType, Any], extra: bytes) -> None:
    ty, value = case
    with pytest.raises(DecodeError):
        bsatn.decode(ty, bsatn.encode(ty, value) + extra)


@given(algebraic_types, st.binary(max_size=64))
def test_random_bytes_decode_or_raise_decode_error_only(ty: at.AlgebraicType, data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        bsatn.decode(ty, data)


@given(typed_values(), st.data())
def test_corrupted_encodings_decode_or_raise_decode_error_only(
    case: tuple[at.AlgebraicType, Any], data: st.DataObject
) -> None:
    ty, value = case
    encoded = bytearray(bsatn.encode(ty, value))
    assume(encoded)
    index = data.draw(st.integers(0, len(encoded) - 1))
    encoded[index] = data.draw(st.integers(0, 255))
    with contextlib.suppress(DecodeError):
        bsatn.decode(ty, bytes(encoded))


@pytest.mark.parametrize("byte", [2, 3, 0x80, 0xFF])
def test_a_bool_byte_other_than_0_or_1_is_refused(byte: int) -> None:
    with pytest.raises(DecodeError):
        bsatn.decode(at.BOOL, bytes([byte]))
    with pytest.raises(DecodeError):
        bsatn.decode(at.product(("a", at.U8), ("b", at.BOOL)), bytes([1, byte]))


@given(st.lists(algebraic_types, min_size=1, max_size=5), st.integers(0, 255))
def test_a_sum_tag_past_the_last_variant_is_refused(variants: list[at.AlgebraicType], tag: int) -> None:
    ty = at.sum_type(*((f"v{i}", v) for i, v in enumerate(variants)))
    assume(tag >= len(variants))
    with pytest.raises(DecodeError):
        bsatn.decode(ty, bytes([tag]) + b"\x00" * 64)


@pytest.mark.parametrize("tag", [2, 7, 255])
def test_an_option_tag_other_than_0_or_1_is_refused(tag: int) -> None:
    with pytest.raises(DecodeError):
        bsatn.decode(at.option(at.U8), bytes([tag, 0]))


@pytest.mark.parametrize(
    "ty",
    [at.STRING, at.BYTES, at.array(at.U64), at.array(at.STRING), at.array(at.UNIT), at.array(at.array(at.UNIT))],
)
@pytest.mark.parametrize("length", [0xFFFFFFFF, 0x7FFFFFFF, 1 << 24])
def test_huge_length_prefixes_are_refused_without_allocating(ty: at.AlgebraicType, length: int) -> None:
    with pytest.raises(DecodeError):
        bsatn.decode(ty, struct.pack("<I", length) + b"\x00" * 16)


def test_invalid_utf8_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        bsatn.decode(at.STRING, struct.pack("<I", 2) + b"\xc3\x28")


@given(st.data())
def test_values_of_special_types_round_trip(data: st.DataObject) -> None:
    for ty in (at.IDENTITY, at.CONNECTION_ID, at.TIMESTAMP, at.TIME_DURATION, at.SCHEDULE_AT):
        value = data.draw(values_of(ty))
        assert bsatn.decode(ty, bsatn.encode(ty, value)) == value


@given(algebraic_types)
def test_sats_json_of_types_round_trips(ty: at.AlgebraicType) -> None:
    assert at.from_json(at.to_json(ty)) == ty
