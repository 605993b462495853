"""`bsatn_check.args_checker`: a reducer's argument bytes checked without building the values, with the verdict of
`Codec.decode_prefix` (what `host/js_module.py` asked before), held equal on valid, cut and spoiled inputs."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autopilot_sync.module.schema import SYNC_EVENT_INPUT
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime.bsatn_check import RowsDoNotDecodeError, args_checker
from autopilot_sync.spacetime.values import Timestamp

APPEND = at.product(("batch", at.array(SYNC_EVENT_INPUT)))
MIXED = at.product(
    ("name", at.STRING),
    ("blob", at.array(at.U8)),
    ("rows", at.array(at.product(("n", at.U32), ("text", at.STRING), ("when", at.TIMESTAMP), ("f", at.F64)))),
    ("count", at.U64),
)

texts = st.text(max_size=8)
events = st.tuples(texts, texts, texts, texts, texts, st.integers(0, 2**64 - 1), st.integers(-(2**63), 2**63 - 1))


def _append_args(batch: list[tuple[Any, ...]]) -> bytes:
    values = [(*event[:6], Timestamp(event[6])) for event in batch]
    return bsatn.codec(APPEND).encode((values,))


def _verdicts(params: at.ProductType, data: bytes) -> tuple[bool, bool]:
    checker = args_checker(params, ())
    assert checker is not None
    try:
        bsatn.codec(params).decode_prefix(data, 0)
        decodes = True
    except bsatn.DecodeError:
        decodes = False
    try:
        checker(data)
        passes = True
    except RowsDoNotDecodeError:
        passes = False
    return decodes, passes


@settings(max_examples=300, deadline=None)
@given(batch=st.lists(events, max_size=4), cut=st.integers(0, 400), spoil=st.lists(st.integers(0, 400), max_size=3))
def test_the_args_checker_refuses_exactly_what_the_decoder_refuses(
    batch: list[tuple[Any, ...]], cut: int, spoil: list[int]
) -> None:
    data = bytearray(_append_args(batch))
    for position in spoil:
        if data:
            data[position % len(data)] ^= 0xC0  # lengths, counts and UTF-8 lead bytes all move
    for candidate in (bytes(data), bytes(data[: cut % (len(data) + 1)]), bytes(data) + b"\xff"):
        decodes, passes = _verdicts(APPEND, candidate)
        assert passes == decodes, candidate


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=64))
def test_the_args_checker_agrees_with_the_decoder_on_arbitrary_bytes(data: bytes) -> None:
    decodes, passes = _verdicts(MIXED, data)
    assert passes == decodes


def test_valid_arguments_pass_and_a_string_cut_inside_a_character_is_refused() -> None:
    data = _append_args([("s", "s:1", "k", '{"é":1}', "sha256:x", 1, 5)])
    checker = args_checker(APPEND, ())
    assert checker is not None
    checker(data)
    spoiled = data.replace("é".encode(), b"\xc3\x00")
    with pytest.raises(RowsDoNotDecodeError):
        checker(spoiled)
    with pytest.raises(bsatn.DecodeError):
        bsatn.codec(APPEND).decode_prefix(spoiled, 0)


def test_a_reducer_without_parameters_is_checked_as_the_decoder_does() -> None:
    for data in (b"", b"\x00\xff"):
        decodes, passes = _verdicts(at.product(), data)
        assert decodes and passes


def test_parameters_of_a_shape_the_checker_lacks_get_no_checker() -> None:
    assert args_checker(at.product(("maybe", at.option(at.STRING))), ()) is None
    assert args_checker(at.product(("flag", at.BOOL)), ()) is None
    assert args_checker(at.product(("names", at.array(at.STRING))), ()) is None
