"""The generated product decoder keeps the interpreted one's contract: same values, every bad input a DecodeError."""

from __future__ import annotations

import pytest

from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime.errors import DecodeError
from autopilot_sync.spacetime.values import Identity, SumValue, TimeDuration, Timestamp

ROW = at.product(
    ("name", at.STRING),
    ("seq", at.U64),
    ("at", at.TIMESTAMP),
    ("took", at.TIME_DURATION),
    ("delta", at.I32),
    ("blob", at.BYTES),
    ("flag", at.BOOL),
    ("note", at.option(at.STRING)),
    ("who", at.IDENTITY),
    ("choice", at.sum_type(("a", at.U8), ("b", at.STRING))),
    ("ratio", at.F64),
)
VALUE = ("hé", 5, Timestamp(7), TimeDuration(-9), -3, b"xy", True, "n", Identity(12), SumValue(1, "b"), 0.5)


def test_a_row_of_mixed_fields_decodes_to_the_values_it_was_encoded_from() -> None:
    codec = bsatn.codec(ROW)
    data = codec.encode(VALUE)
    assert codec.decode(data) == VALUE
    assert codec.decode(memoryview(data)) == VALUE
    assert codec.decode(bytearray(data)) == VALUE
    assert bsatn.codec(at.product()).decode(b"") == ()


def test_every_truncation_of_a_row_is_a_decode_error() -> None:
    codec = bsatn.codec(ROW)
    data = codec.encode(VALUE)
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            codec.decode(data[:cut])


def test_bad_utf8_and_a_bad_bool_in_a_row_are_decode_errors() -> None:
    codec = bsatn.codec(at.product(("s", at.STRING), ("b", at.BOOL)))
    with pytest.raises(DecodeError, match="UTF-8"):
        codec.decode(b"\x02\x00\x00\x00\xff\xfe\x01")
    with pytest.raises(DecodeError, match="bool"):
        codec.decode(b"\x00\x00\x00\x00\x02")
