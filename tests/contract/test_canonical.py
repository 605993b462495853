"""Canonical JSON: the orjson fast path is byte-identical to the standard-library definition, or steps aside."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import enum
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autopilot_sync.contract import canonical
from autopilot_sync.contract.canonical import (
    CanonicalJsonError,
    canonical_json,
    canonicalize_and_hash,
    canonicalize_text,
    hash_value,
    payload_hash,
)

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "payload_hash.json").read_text())["vectors"]


def definition(text: str) -> str:
    """What the canonical form is by definition: `json.loads` then sorted, compact, non-ASCII `json.dumps`."""
    return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def agree(text: str) -> str:
    """Both paths give the definition's bytes (the fast path may decline, never differ)."""
    expected = definition(text)
    fast = canonical._canonicalize_orjson(text)
    assert fast is None or fast == expected, (text, fast, expected)
    assert canonicalize_text(text) == expected
    assert canonicalize_and_hash(text) == (expected, len(expected.encode("utf-8")), payload_hash(expected))
    return expected


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_the_fast_path_takes_every_vector_and_matches_it(vector: dict[str, Any]) -> None:
    for text in (json.dumps(vector["value"]), json.dumps(vector["value"], indent=2, ensure_ascii=False)):
        assert canonical._canonicalize_orjson(text) == vector["canonical"]
        assert payload_hash(canonicalize_text(text)) == vector["payload_hash"]
        assert canonicalize_and_hash(text)[::2] == (vector["canonical"], vector["payload_hash"])


json_floats = st.floats(allow_nan=False, allow_infinity=False)
json_ints = (
    st.integers()
    | st.integers(-(2**200), 2**200)
    | st.sampled_from([2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1])
)
json_text = st.text(st.characters(exclude_categories=("Cs",))) | st.sampled_from(["e+5", "1e-7", "0.00001", "a\u2028b"])
json_values = st.recursive(
    st.none() | st.booleans() | json_ints | json_floats | json_text,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(json_text, children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=2000)
@given(json_values, st.booleans())
def test_random_json_is_byte_identical_to_the_definition(value: Any, ascii_input: bool) -> None:
    agree(json.dumps(value, ensure_ascii=ascii_input))


@settings(max_examples=500)
@given(json_floats)
def test_every_float_formats_like_python(value: float) -> None:
    for text in (repr(value), json.dumps([value, {"x": -value}])):
        agree(text)


@pytest.mark.parametrize(
    "text",
    [
        "1e16",
        "1e-5",
        "0.0001",
        "0.00001",
        "1.5e300",
        "5e-324",
        "-0.0",
        "-0",
        "1E5",
        "1e+2",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        str(2**300),
        '{"b":18446744073709551616,"a":"x"}',
        '{"a":1,"a":2}',
        '"\\u007f\\u2028\\ud83d\\ude00"',
        '{"\\uff61":1,"\\ud83d\\ude00":2,"a":3}',
        "[" * 300 + "]" * 300,
        '{"hash":"3e-4f","id":"0.00001"}',
    ],
)
def test_edge_cases_agree(text: str) -> None:
    agree(text)


def test_numbers_beyond_64_bits_keep_every_digit() -> None:
    assert canonicalize_text(f"[{2**64}, {-(2**63) - 1}]") == f"[{2**64},{-(2**63) - 1}]"


@pytest.mark.parametrize("text", ["", "[1,", "NaN", "[Infinity]", "-Infinity", "1e400", "{'a':1}", "\ufeff{}"])
def test_what_the_definition_refuses_stays_refused(text: str) -> None:
    with pytest.raises(CanonicalJsonError):
        canonicalize_text(text)
    with pytest.raises(CanonicalJsonError):
        canonicalize_and_hash(text)


@pytest.mark.parametrize("text", ['"\\ud800"', '{"a": "x\\udfff"}', "[" * 5000 + "]" * 5000, "9" * 5000])
def test_what_no_reader_can_hash_or_parse_is_refused_not_crashed(text: str) -> None:
    assert canonical._canonicalize_orjson(text) is None
    with pytest.raises(CanonicalJsonError):
        canonicalize_text(text)
    with pytest.raises(CanonicalJsonError):
        canonicalize_and_hash(text)


def test_the_fast_path_covers_typical_payloads() -> None:
    payload = {
        "run_id": "r-1",
        "type": "run.message.delta",
        "delta": "héllo ✓",
        "index": 3,
        "t": 1_700_000_000_000_000_000,
    }
    text = json.dumps(payload, indent=1)
    assert canonical._canonicalize_orjson(text) == definition(text)


def _definition_of_value(value: Any) -> tuple[str, str]:
    """What `canonical_json` answers by definition: the sorted compact `json.dumps` text, or a refusal."""
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")
    except (TypeError, ValueError, RecursionError):
        return "refused", ""
    return "text", text


def _answer(value: Any) -> tuple[str, str]:
    try:
        return "text", canonical_json(value)
    except CanonicalJsonError:
        return "refused", ""


@settings(max_examples=2000)
@given(json_values)
def test_a_producers_value_prints_as_the_definition_and_hashes_its_bytes(value: Any) -> None:
    expected = _definition_of_value(value)
    assert _answer(value) == expected
    if expected[0] == "text":
        assert hash_value(value) == (expected[1], payload_hash(expected[1]))


class _Colour(enum.Enum):
    RED = 1


class _Level(enum.IntEnum):
    HIGH = 2


class _Text(str):
    pass


@dataclasses.dataclass
class _Point:
    x: int


ODD_VALUES = [
    float("nan"),
    float("inf"),
    -float("inf"),
    uuid.UUID(int=5),
    _Colour.RED,
    _Level.HIGH,
    _Text("t"),
    (1, 2),
    _Point(1),
    datetime.datetime(2026, 1, 1),
    datetime.date(2026, 1, 1),
    {1: 2},
    {None: 1},
    2**70,
    collections.OrderedDict(b=1, a=2),
    1e-7,
    1e16,
    "\ud800",
    b"bytes",
    object(),
    -0.0,
    [[[[[]]]]],
]


@pytest.mark.parametrize("odd", ODD_VALUES, ids=repr)
def test_what_orjson_prints_its_own_way_gets_the_definitions_answer(odd: Any) -> None:
    """orjson serializes some values the definition refuses or prints otherwise (NaN as null, a UUID, an enum, a
    tuple); those, alone and nested, get exactly the definition's text or its refusal."""
    for value in (odd, [odd], {"k": odd, "a": [1, {"z": odd}]}):
        assert _answer(value) == _definition_of_value(value)


def _float_form_in_bytes(out: bytes) -> bool:
    """The scan as it was made on orjson's UTF-8 bytes: `0.0000`, or `e+`/`e-` right after an ASCII digit."""
    if b"0.0000" in out:
        return True
    for marker in (b"e+", b"e-"):
        at = out.find(marker)
        while at > 0:
            if 0x30 <= out[at - 1] <= 0x39:
                return True
            at = out.find(marker, at + 2)
    return False


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="0123456789e+-.x\u0663\u00e9\u2713\U0001f600", max_size=40))
def test_the_float_form_scan_of_text_answers_as_the_scan_of_its_utf8_bytes(text: str) -> None:
    assert canonical._float_form_differs(text) == _float_form_in_bytes(text.encode("utf-8"))


@pytest.mark.parametrize("text", ['{"v":1e+16}', '{"v":1.5e-05}', '{"v":0.00001}', '["9e-x"]', '["0.0000"]'])
def test_every_float_form_marker_is_seen_in_the_text(text: str) -> None:
    assert canonical._float_form_differs(text)
