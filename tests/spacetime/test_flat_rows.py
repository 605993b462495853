"""`flat_rows`: the fast decoder of flat rows gives exactly what `bsatn` gives, and bad bytes only a DecodeError."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from spacetime_strategies import values_of

from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn, flat_rows
from autopilot_sync.spacetime.errors import DecodeError

_FLAT_COLUMNS = [
    at.STRING,
    at.BOOL,
    *(at.Primitive(kind) for kind in flat_rows._FORMATS),
    at.product((at.TIMESTAMP_TAG, at.I64)),
    at.product((at.TIME_DURATION_TAG, at.I64)),
]
flat_types = st.lists(st.sampled_from(_FLAT_COLUMNS), min_size=1, max_size=12).map(
    lambda columns: at.product(*((f"c{i}", ty) for i, ty in enumerate(columns)))
)


@st.composite
def flat_rows_with_values(draw: st.DrawFn) -> tuple[at.ProductType, Any]:
    ty = draw(flat_types)
    return ty, draw(values_of(ty))


def _flat(ty: at.ProductType) -> flat_rows.RowDecoder:
    decode = flat_rows.decoder(ty)
    assert decode is not None
    return decode


@given(flat_rows_with_values())
def test_a_flat_row_decodes_to_what_bsatn_decodes(case: tuple[at.ProductType, Any]) -> None:
    ty, value = case
    data = bsatn.encode(ty, value)
    assert _flat(ty)(data, 0) == bsatn.codec(ty).decode_prefix(data, 0)
    assert _flat(ty)(b"\x07" + data, 1) == (bsatn.decode(ty, data), len(data) + 1)


@given(flat_rows_with_values())
def test_every_truncation_of_a_flat_row_is_a_decode_error(case: tuple[at.ProductType, Any]) -> None:
    ty, value = case
    data = bsatn.encode(ty, value)
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            _flat(ty)(data[:cut], 0)


@given(flat_types, st.binary(max_size=64))
def test_arbitrary_bytes_decode_as_bsatn_decodes_them_or_fail_as_it_does(ty: at.ProductType, data: bytes) -> None:
    try:
        expected = bsatn.codec(ty).decode_prefix(data, 0)
    except DecodeError:
        with pytest.raises(DecodeError):
            _flat(ty)(data, 0)
        return
    assert _flat(ty)(data, 0) == expected


def test_a_row_with_a_column_that_is_not_flat_keeps_the_general_codec() -> None:
    assert flat_rows.decoder(at.product(("a", at.STRING), ("b", at.array(at.U8)))) is None
    assert flat_rows.decoder(at.product(("a", at.option(at.STRING)))) is None
    assert flat_rows.decoder(at.product(("a", at.U128))) is None
