"""`BsatnRowList`: the size hint the real server would choose, and refusal of hints that do not fit the data."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autopilot_sync.spacetime.errors import DecodeError
from autopilot_sync.spacetime.rowlist import (
    BsatnRowList,
    FixedSize,
    RowOffsets,
    decode_row_list,
    encode_row_list_into,
)


def _encode(rows: BsatnRowList) -> bytes:
    out = bytearray()
    encode_row_list_into(out, rows)
    return bytes(out)


def test_no_rows_is_empty_row_offsets_like_the_real_server() -> None:
    assert BsatnRowList.from_rows([]) == BsatnRowList(RowOffsets(()), b"")
    assert _encode(BsatnRowList.empty()) == b"\x01" + b"\x00" * 4 + b"\x00" * 4


def test_rows_of_one_length_use_fixed_size() -> None:
    rows = BsatnRowList.from_rows([b"abcd", b"efgh"])
    assert rows == BsatnRowList(FixedSize(4), b"abcdefgh")
    assert _encode(rows) == b"\x00\x04\x00" + struct.pack("<I", 8) + b"abcdefgh"


def test_rows_of_differing_lengths_use_start_offsets() -> None:
    assert BsatnRowList.from_rows([b"a", b"bcd", b""]) == BsatnRowList(RowOffsets((0, 1, 4)), b"abcd")


def test_zero_length_rows_use_offsets_so_they_can_be_counted() -> None:
    assert BsatnRowList.from_rows([b"", b""]) == BsatnRowList(RowOffsets((0, 0)), b"")
    assert BsatnRowList.from_rows([b"", b""]).rows() == [b"", b""]


def test_rows_too_long_for_u16_use_offsets() -> None:
    big = b"x" * 0x10000
    assert BsatnRowList.from_rows([big, big]).size_hint == RowOffsets((0, 0x10000))
    edge = b"y" * 0xFFFF
    assert BsatnRowList.from_rows([edge, edge]).size_hint == FixedSize(0xFFFF)


@given(st.lists(st.binary(max_size=12), max_size=20))
def test_split_inverts_build(rows: list[bytes]) -> None:
    packed = BsatnRowList.from_rows(rows)
    assert packed.rows() == rows
    assert len(packed) == len(rows)
    decoded, end = decode_row_list(_encode(packed), 0)
    assert decoded == packed
    assert end == len(_encode(packed))


@pytest.mark.parametrize(
    "rows",
    [
        BsatnRowList(FixedSize(3), b"abcd"),
        BsatnRowList(FixedSize(0), b"a"),
        BsatnRowList(RowOffsets(()), b"a"),
        BsatnRowList(RowOffsets((1,)), b"ab"),
        BsatnRowList(RowOffsets((0, 3)), b"ab"),
        BsatnRowList(RowOffsets((0, 2, 1)), b"abc"),
    ],
)
def test_hints_that_do_not_fit_the_data_are_decode_errors(rows: BsatnRowList) -> None:
    with pytest.raises(DecodeError):
        rows.rows()
    with pytest.raises(DecodeError):
        decode_row_list(_encode(rows), 0)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x02",
        b"\x00\x01",
        b"\x01\xff\xff\xff\xff",
        b"\x00\x01\x00\xff\xff\xff\xff",
        b"\x01\x01\x00\x00\x00" + struct.pack("<Q", 1 << 63) + b"\x00\x00\x00\x00",
    ],
)
def test_hostile_row_list_bytes_are_decode_errors(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_row_list(data, 0)
