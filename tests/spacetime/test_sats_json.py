"""SATS-JSON in and out, in the shapes SpacetimeDB's HTTP API reads and writes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime.sats_json import (
    SatsJsonError,
    decode_args,
    from_json,
    loads,
    to_json,
    to_untyped_json,
)
from autopilot_sync.spacetime.values import ConnectionId, Identity, SumValue, TimeDuration, Timestamp

IDENTITY_HEX = "c200ef884364c1a99be0298dc68f2004e6b97c09d1b1658b7db22f51fb662059"
SHAPE = at.sum_type(("Circle", at.F64), ("Square", at.product(("side", at.U32))), ("Empty", at.UNIT))
ROW = at.product(
    ("id", at.U64),
    ("who", at.IDENTITY),
    ("conn", at.CONNECTION_ID),
    ("at", at.TIMESTAMP),
    ("ttl", at.TIME_DURATION),
    ("note", at.option(at.STRING)),
    ("blob", at.BYTES),
    ("big", at.U256),
    ("neg", at.I256),
    ("wide", at.I128),
    ("shape", SHAPE),
    ("tags", at.array(at.STRING)),
)
VALUE = (
    2**64 - 1,
    Identity.from_hex(IDENTITY_HEX),
    ConnectionId(2**100 + 7),
    Timestamp(1_700_000_000_000_000),
    TimeDuration(-5),
    None,
    b"\x00\xff",
    42,
    -42,
    -(2**127),
    SumValue(1, (7,)),
    ["a", "b"],
)


def test_typed_form_matches_the_real_serializer() -> None:
    assert to_json(ROW, VALUE) == {
        "id": 18446744073709551615,
        "who": {"__identity__": "0x" + IDENTITY_HEX},
        "conn": {"__connection_id__": 2**100 + 7},
        "at": {"__timestamp_micros_since_unix_epoch__": 1_700_000_000_000_000},
        "ttl": {"__time_duration_micros__": -5},
        "note": {"none": []},
        "blob": "00ff",
        "big": "0x2a",
        "neg": "-0x2a",
        "wide": -(2**127),
        "shape": {"Square": {"side": 7}},
        "tags": ["a", "b"],
    }


def test_untyped_form_is_what_sql_rows_look_like() -> None:
    assert to_untyped_json(ROW, VALUE) == [
        18446744073709551615,
        ["0x" + IDENTITY_HEX],
        [2**100 + 7],
        [1_700_000_000_000_000],
        [-5],
        [1, []],
        "00ff",
        "0x2a",
        "-0x2a",
        -(2**127),
        [1, [7]],
        ["a", "b"],
    ]


def test_large_integers_stay_exact_json_numbers() -> None:
    text = json.dumps(to_json(at.product(("n", at.U128)), (2**128 - 1,)))
    assert text == '{"n": 340282366920938463463374607431768211455}'


def test_non_finite_floats_become_null() -> None:
    assert to_json(at.F64, float("nan")) is None
    assert to_json(at.F32, 1.5) == 1.5


@pytest.mark.parametrize("form", [to_json, to_untyped_json])
def test_both_output_forms_decode_back(form: Any) -> None:
    assert from_json(ROW, json.loads(json.dumps(form(ROW, VALUE)))) == VALUE


def test_option_input_forms() -> None:
    opt = at.option(at.U8)
    assert from_json(opt, {"some": 3}) == 3
    assert from_json(opt, {"none": []}) is None
    assert from_json(opt, None) is None
    assert from_json(opt, [0, 3]) == 3
    assert from_json(opt, {"0": 3}) == 3


def test_sum_by_name_by_tag_and_as_pair() -> None:
    assert from_json(SHAPE, {"Circle": 1}) == SumValue(0, 1.0)
    assert from_json(SHAPE, {"2": []}) == SumValue(2, ())
    assert from_json(SHAPE, ["Square", [4]]) == SumValue(1, (4,))
    assert from_json(SHAPE, [1, {"side": 4}]) == SumValue(1, (4,))


def test_bytes_accept_hex_with_or_without_prefix_and_u8_arrays() -> None:
    assert from_json(at.BYTES, "0xABcd") == b"\xab\xcd"
    assert from_json(at.BYTES, "abcd") == b"\xab\xcd"
    assert from_json(at.BYTES, [1, 2]) == b"\x01\x02"


def test_wide_integers_accept_hex_decimal_strings_and_numbers() -> None:
    assert from_json(at.U256, "0xff") == 255
    assert from_json(at.U256, "255") == 255
    assert from_json(at.I256, "-0x10") == -16
    assert from_json(at.U256, 7) == 7


def test_reducer_args_positional_or_by_name() -> None:
    params = at.product(("text", at.STRING), ("count", at.U32))
    assert decode_args(params, '["hi", 3]') == ("hi", 3)
    assert decode_args(params, '{"count": 3, "text": "hi"}') == ("hi", 3)
    assert decode_args(at.UNIT, "[]") == ()


@pytest.mark.parametrize(
    ("ty", "body", "path", "expected"),
    [
        (at.product(("a", at.U8)), "[256]", "$[0]", "U8 in 0..=255"),
        (at.product(("a", at.U8)), "[-1]", "$[0]", "U8 in 0..=255"),
        (at.product(("a", at.U32)), "[1.5]", "$[0]", "U32 (integer)"),
        (at.product(("a", at.U32)), "[true]", "$[0]", "U32 (integer)"),
        (at.product(("a", at.U64)), '["5"]', "$[0]", "U64 (integer)"),
        (at.product(("a", at.STRING)), "[1]", "$[0]", "string"),
        (at.product(("a", at.BOOL)), "[0]", "$[0]", "bool"),
        (at.product(("a", at.STRING)), '["x", "y"]', "$", "1 elements"),
        (at.product(("a", at.STRING)), '{"b": "x"}', "$", "fields"),
        (at.product(("a", at.STRING)), "{}", "$", "fields"),
        (at.product(("a", at.STRING)), '"x"', "$", "product"),
        (at.product(("s", SHAPE)), '[{"Triangle": 1}]', "$[0]", "sum"),
        (at.product(("s", SHAPE)), '[{"Circle": 1, "Empty": []}]', "$[0]", "sum"),
        (at.product(("s", SHAPE)), '[{"9": []}]', "$[0]", "sum"),
        (at.product(("s", SHAPE)), '[{"Square": {"side": "x"}}]', "$[0].Square.side", "U32"),
        (at.product(("w", at.IDENTITY)), '["0xc200"]', "$[0]", "Identity"),
        (at.product(("w", at.IDENTITY)), '[{"__identity__": "zz"}]', "$[0].__identity__", "U256"),
        (at.product(("b", at.BYTES)), '["abc"]', "$[0]", "even-length hex"),
        (at.product(("t", at.array(at.U16))), "[[1, -2]]", "$[0][1]", "U16"),
        (at.product(("o", at.option(at.U8))), "[{}]", "$[0]", "Option<U8>"),
        (at.product(("f", at.F64)), "[NaN]", "$", "valid JSON"),
        (at.product(("a", at.U8)), "[1", "$", "valid JSON"),
        (at.product(("a", at.U8)), '{"a": 1, "a": 2}', "$", "duplicate"),
    ],
)
def test_bad_arguments_name_the_path_and_the_expected_type(
    ty: at.ProductType, body: str, path: str, expected: str
) -> None:
    with pytest.raises(SatsJsonError) as info:
        decode_args(ty, body)
    assert info.value.path == path
    assert expected in str(info.value)


def test_unit_variant_rejects_null_payload() -> None:
    with pytest.raises(SatsJsonError):
        from_json(SHAPE, {"Empty": None})


def test_deep_nesting_is_refused_not_a_crash() -> None:
    ty: at.AlgebraicType = at.U8
    for _ in range(100):
        ty = at.array(ty)
    data: Any = 1
    for _ in range(100):
        data = [data]
    with pytest.raises(SatsJsonError, match="nesting"):
        from_json(ty, data)


def test_refs_resolve_through_the_typespace() -> None:
    typespace = [at.product(("x", at.I32))]
    assert from_json(at.array(at.RefType(0)), [[1], {"x": 2}], typespace) == [(1,), (2,)]
    assert to_json(at.RefType(0), (3,), typespace) == {"x": 3}


def test_loads_is_strict_json() -> None:
    assert loads(b'{"a": [1, 2.5]}') == {"a": [1, 2.5]}
    with pytest.raises(SatsJsonError):
        loads("Infinity")


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.text(), st.binary(max_size=16))
def test_roundtrip_property(n: int, s: str, b: bytes) -> None:
    ty = at.product(("n", at.I64), ("s", at.STRING), ("b", at.BYTES), ("o", at.option(at.I64)))
    value = (n, s, b, n if n % 2 else None)
    for form in (to_json, to_untyped_json):
        assert from_json(ty, json.loads(json.dumps(form(ty, value)))) == value
