"""One budget of zero-size values per decoded input, shared by every nested array, in both codecs.

The per-array cap on arrays of zero-size elements (`Vec<()>`) let `Vec<Vec<()>>` ask for the whole cap in each 4-byte
inner length: 260 bytes decoded to 67 million list slots (526 MB, 2.4 s). Now every array of zero-size elements in
one input charges one `MAX_ZERO_SIZE_ELEMENTS` (each element weighted by the values it holds), so such input is
refused with the Python codec's `DecodeError`, the same from the C program (which hands every failure to it), after
at most one budget's worth of values. Memory is measured with `tracemalloc` (it sees the C code's `PyMem` lists).
"""

from __future__ import annotations

import struct
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

from autopilot_sync.client.schema import TableSchema
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime.bsatn_check import RowsDoNotDecodeError, args_checker
from autopilot_sync.spacetime.errors import DecodeError

LIMIT = bsatn.MAX_ZERO_SIZE_ELEMENTS
#: What one refused input may allocate at most: a budget's list of units (8 bytes a slot) twice (the C walk's, then
#: the Python codec's), with room; before the budget, 64 inner arrays of 2^20 units took 526 MB.
MEMORY_BOUND = 4 * 8 * LIMIT
#: A two-variant sum whose first variant holds units: a sum's payload in the walk.
UNITS_OR_BYTE = at.sum_type(("units", at.array(at.UNIT)), ("byte", at.U8))
PAIR_OF_UNITS = at.product(("a", at.UNIT), ("b", at.UNIT))


def _u32(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}I", *values)


def _nested_units(groups: int, each: int = LIMIT) -> bytes:
    """`Vec<Vec<()>>` of `groups` arrays of `each` units: 4 bytes a group."""
    return _u32(groups, *([each] * groups))


#: (type, typespace, hostile bytes of a few hundred bytes at most) for every way the arrays nest.
HOSTILE: dict[str, tuple[at.ProductType, tuple[at.AlgebraicType, ...], bytes]] = {
    "Vec<Vec<()>>, 260 bytes": (at.product(("g", at.array(at.array(at.UNIT)))), (), _nested_units(64)),
    "Vec<Vec<((), ())>>": (at.product(("g", at.array(at.array(PAIR_OF_UNITS)))), (), _nested_units(16, LIMIT // 3)),
    "Vec<Option<Vec<()>>>": (
        at.product(("g", at.array(at.option(at.array(at.UNIT))))),
        (),
        _u32(32) + b"".join(b"\x00" + _u32(LIMIT) for _ in range(32)),
    ),
    "Vec<Sum(Vec<()>, u8)>": (
        at.product(("g", at.array(UNITS_OR_BYTE))),
        (),
        _u32(32) + b"".join(b"\x00" + _u32(LIMIT) for _ in range(32)),
    ),
    "(Vec<()>, Vec<()>, Vec<()>) fields": (
        at.product(("a", at.array(at.UNIT)), ("b", at.array(at.UNIT)), ("c", at.array(at.UNIT))),
        (),
        _u32(LIMIT, LIMIT, LIMIT),
    ),
    "Vec<Ref(product holding Vec<()>)>": (
        at.product(("g", at.array(at.RefType(0)))),
        (at.product(("n", at.U8), ("units", at.array(at.UNIT))),),
        _u32(16) + b"".join(b"\x07" + _u32(LIMIT) for _ in range(16)),
    ),
}


def _codecs(ty: at.ProductType, typespace: tuple[at.AlgebraicType, ...]) -> list[tuple[str, bsatn.Codec]]:
    return [("compiled", bsatn.codec(ty, typespace)), ("python", bsatn.python_codec(ty, typespace))]


def _outcome(decode: Callable[[], Any], measure: bool) -> tuple[str, Any, int]:
    """(`ok` and the value, or `error` and its text) and, when `measure`, the peak bytes allocated while decoding
    (tracing every allocation makes a decode ~20x slower, so one case is measured)."""
    if measure:
        tracemalloc.start()
    try:
        try:
            result: tuple[str, Any] = ("ok", decode())
        except DecodeError as exc:
            result = ("error", str(exc))
        peak = tracemalloc.get_traced_memory()[1] if measure else 0
    finally:
        if measure:
            tracemalloc.stop()
    return result[0], result[1], peak


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_a_few_hundred_bytes_of_nested_zero_size_arrays_are_refused_within_a_bound(case: str) -> None:
    ty, typespace, data = HOSTILE[case]
    assert len(data) <= 300
    outcomes = []
    for name, codec in _codecs(ty, typespace):
        measure = case.endswith("260 bytes")
        kind, text, peak = _outcome(lambda codec=codec: codec.decode(data), measure)  # type: ignore[misc]
        assert kind == "error", f"{name} decoded {case}"
        assert "zero-size values per input" in text, text
        assert peak < MEMORY_BOUND, f"{name} allocated {peak} bytes for {len(data)} bytes of {case}"
        outcomes.append(text)
    assert outcomes[0] == outcomes[1]  # the compiled program's answer is the Python codec's error


def test_the_budget_is_the_whole_input_s_exactly_at_its_limit_and_one_past() -> None:
    ty = at.product(("g", at.array(at.array(at.UNIT))))
    half = LIMIT // 2
    for name, codec in _codecs(ty, ()):
        assert codec.decode(_nested_units(2, half)) == ([[()] * half, [()] * half],), name
        with pytest.raises(DecodeError) as refused:
            codec.decode(_u32(2, half, half + 1))
        assert str(refused.value) == (
            f"array length {half + 1} over the limit of {LIMIT} zero-size values per input (1 per element, {half} left)"
        )


def test_an_element_holding_several_values_is_charged_for_each() -> None:
    ty = at.product(("pairs", at.array(PAIR_OF_UNITS)))  # one element: the pair and its two units
    assert bsatn.zero_weight(PAIR_OF_UNITS, ()) == 3
    fits = LIMIT // 3
    for name, codec in _codecs(ty, ()):
        assert codec.decode(_u32(fits)) == ([((), ())] * fits,), name
        with pytest.raises(DecodeError, match=r"over the limit .* \(3 per element, 1048576 left\)"):
            codec.decode(_u32(fits + 1))
    wide = at.ProductType(tuple(at.ProductElement(None, at.UNIT) for _ in range(2000)))
    assert bsatn.zero_weight(at.array(wide), ()) == 1  # an array takes 4 bytes: no weight of its own
    assert bsatn.zero_weight(wide, ()) == 2001
    nested = at.product(("w", at.product(*((None, wide) for _ in range(600)))))
    assert bsatn.zero_weight(nested, ()) == LIMIT + 1  # capped: one element is over any budget


def test_a_compiled_program_inside_a_python_decoder_goes_on_with_the_input_s_budget() -> None:
    # An array of products is decoded in Python, each product by its C program: the budget passes between them.
    inner = at.product(("units", at.array(at.UNIT)))
    codec = bsatn.codec(at.array(inner))
    assert codec.budgeted
    half = LIMIT // 2
    assert codec.decode(_u32(2, half, half)) == [([()] * half,), ([()] * half,)]
    with pytest.raises(DecodeError, match=f"array length {half + 1} over the limit"):
        codec.decode(_u32(2, half, half + 1))
    program = bsatn.codec(inner)
    assert isinstance(program, bsatn.NativeCodec) or not bsatn.NATIVE
    budget = [1000]
    assert program.decoder(_u32(600), 0, budget) == (([()] * 600,), 4)  # type: ignore[call-arg]
    assert budget == [400]
    with pytest.raises(DecodeError, match=r"array length 600 over the limit .* 400 left"):
        program.decoder(_u32(600), 0, budget)  # type: ignore[call-arg]
    assert budget == [400]  # a refused value charges nothing


def test_types_without_zero_size_arrays_keep_two_argument_decoders() -> None:
    for ty in (
        at.product(("s", at.STRING), ("n", at.U64), ("b", at.BYTES)),
        at.product(("v", at.array(at.array(at.U8))), ("o", at.option(at.I32))),
        at.array(at.product(("x", at.U8), ("unit", at.UNIT))),  # an element of one byte: bounded by the input
    ):
        assert not bsatn.codec(ty).budgeted
        assert not bsatn.python_codec(ty).budgeted


def test_the_argument_checker_charges_one_budget_for_all_parameters() -> None:
    params = at.product(("a", at.array(at.UNIT)), ("b", at.array(at.UNIT)))
    check = args_checker(params, ())
    assert check is not None
    codec = bsatn.codec(params)
    half = LIMIT // 2
    check(_u32(half, half))
    assert codec.decode_prefix(_u32(half, half), 0)[1] == 8
    with pytest.raises(RowsDoNotDecodeError):
        check(_u32(half, half + 1))
    with pytest.raises(DecodeError, match="zero-size values per input"):
        codec.decode_prefix(_u32(half, half + 1), 0)


def test_the_sdk_decodes_a_row_list_of_such_rows_against_one_budget() -> None:
    # A hostile host's row list: every 4-byte row claims most of the budget; the list, not each row, is the input.
    row_type = at.product(("units", at.array(at.UNIT)))
    table = TableSchema("units", row_type, (), (), True, tuple, bsatn.codec(row_type))
    assert not table.decodes_lazily  # an array column: rows are decoded as they arrive, by `decode_rows`
    half = LIMIT // 2
    fits = table.decode_rows([_u32(half), _u32(half)])
    assert [len(row) for _, row in fits] == [half, half]  # the row class here: `tuple` of the units
    with pytest.raises(DecodeError, match=f"array length {half} over the limit .* 0 left"):
        table.decode_rows([_u32(half), _u32(half), _u32(half)])
    assert len(table.decode(_u32(LIMIT))[1]) == LIMIT  # one row alone is one input
