"""The generated product encoder keeps the per-field encoder's contract: same bytes, same refusals, same errors.

The generated function (`bsatn._product_encoder`) takes only values whose simple fields have exactly the builtin
types it packs inline and hands everything else to the per-field encoder it was built around (`generic` in its
namespace). Each test runs both on the same value and compares what came out: bytes, or the exception's type and text.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from spacetime_strategies import LEAF_TYPES, product_of, products_and_values, values_of

from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime.values import ConnectionId, Identity, SumValue, TimeDuration, Timestamp


def _outcome(encoder: bsatn.Encoder, value: Any) -> tuple[str, Any]:
    out = bytearray()
    try:
        encoder(out, value)
    except Exception as exc:  # every kind of refusal is compared, by type and text
        return "error", (type(exc), str(exc))
    return "bytes", bytes(out)


def _both(ty: at.ProductType, value: Any) -> tuple[tuple[str, Any], tuple[str, Any]]:
    generated = bsatn.python_codec(ty).encoder  # the generated Python function, not the C program beside it
    generic = generated.__globals__.get("generic", generated)
    return _outcome(generated, value), _outcome(generic, value)


class _Str(str):
    """A `str` subclass: accepted by the per-field encoder, so it must be by the generated one too."""


class _Tuple(tuple[Any, ...]):
    """A `tuple` subclass (as every generated row class is)."""


#: Values of the wrong kind for some field type: types the encoders refuse or take by subclass, out-of-range ints,
#: text UTF-8 cannot encode.
odd_values = st.one_of(
    st.sampled_from(
        [
            True,
            False,
            None,
            1.5,
            -1,
            1 << 64,
            -(1 << 63) - 1,
            1 << 300,
            "\ud800",
            _Str("sub"),
            b"raw",
            bytearray(b"ba"),
            [1, 2],
            (1,),
            {"f0": 1},
            Timestamp(True),
            Timestamp(1 << 70),
            TimeDuration(-1),
            Identity(3),
            ConnectionId(4),
            SumValue(0, 1),
            float("inf"),
            1e300,
        ]
    ),
    st.integers(),
    st.text(max_size=4),
)


def with_odd_fields(value: Any, data: st.DataObject) -> list[Any]:
    """The fields of `value`, some of them (drawn) replaced by `odd_values`."""
    fields = list(value)
    for i in range(len(fields)):
        if data.draw(st.booleans()):
            fields[i] = data.draw(odd_values)
    return fields


@given(products_and_values())
def test_any_product_value_encodes_to_the_per_field_encoders_bytes(case: tuple[at.ProductType, Any]) -> None:
    ty, value = case
    generated, generic = _both(ty, value)
    assert generated[0] == "bytes"
    assert generated == generic
    assert bsatn.codec(ty).decode(generated[1]) == value


@given(products_and_values(), st.data())
def test_a_value_with_odd_fields_meets_the_same_answer_from_both(
    case: tuple[at.ProductType, Any], data: st.DataObject
) -> None:
    ty, value = case
    fields = with_odd_fields(value, data)
    for candidate in (tuple(fields), _Tuple(fields), fields, dict(zip(ty.field_names(), fields, strict=True))):
        generated, generic = _both(ty, candidate)
        assert generated == generic


@pytest.mark.parametrize("leaf", LEAF_TYPES, ids=repr)
@given(data=st.data())
def test_each_leaf_type_beside_a_string_encodes_as_the_per_field_encoder(
    leaf: at.AlgebraicType, data: st.DataObject
) -> None:
    ty = product_of([at.STRING, leaf, at.U64, at.STRING])
    for value in data.draw(values_of(leaf)), data.draw(odd_values):
        generated, generic = _both(ty, ("é", value, 3, "z"))
        assert generated == generic


def test_a_wrong_length_or_a_non_sequence_is_refused_as_before() -> None:
    ty = product_of([at.STRING, at.U64])
    for value in (("a",), ("a", 1, 2), "ab", 5, None):
        generated, generic = _both(ty, value)
        assert generated[0] == "error"
        assert generated == generic
