"""The commit-log record built in C (`_bsatn.encode_tx_record`) is exactly the record `encode_record_python` writes.

Each test gives the same committed transaction to `encode_record` (C, with the Python twin behind it) and to
`encode_record_python` and compares what came out: the bytes, or the exception's type and text. Besides well-formed
transactions, odd ones (lists for tuples, `bytearray` rows, integer subclasses, numbers out of range, text UTF-8
cannot encode, pairs of the wrong length, missing attributes) are compared, since whatever C declines the twin decides.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autopilot_sync.host import tx_record
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.transaction import CommittedTx, TableChange
from autopilot_sync.host.tx_record import encode_record, encode_record_python
from autopilot_sync.spacetime.values import Identity, Timestamp

pytestmark = pytest.mark.skipif(
    tx_record._native_encode is None, reason="_bsatn.c was not compiled here (the Python encoder runs)"
)


class _Int(int):
    """An int subclass: C takes only the exact type and leaves it to the twin."""


class _Text(str):
    """A str subclass, for the same reason."""


_texts = st.one_of(st.text(max_size=12), st.just("\ud800"), st.text(max_size=4).map(_Text))
_row_bytes = st.one_of(st.binary(max_size=40), st.binary(max_size=8).map(bytearray), st.just("text"), st.none())
_pairs = st.one_of(
    st.tuples(st.binary(max_size=40), st.just(())),
    st.tuples(_row_bytes, st.just(())),
    st.lists(st.binary(max_size=8), min_size=1, max_size=3).map(tuple),
    st.tuples(st.binary(max_size=8), st.just(())).map(list),
)
_rows = st.one_of(st.lists(_pairs, max_size=4).map(tuple), st.lists(_pairs, max_size=3), st.just(None))
_changes = st.one_of(
    st.lists(st.builds(TableChange, _texts, _rows, _rows), max_size=4).map(tuple),
    st.lists(st.builds(TableChange, st.text(max_size=6), _rows, _rows), max_size=2),
    st.lists(st.just(object()), min_size=1, max_size=1).map(tuple),
)
_numbers = st.one_of(st.integers(-(2**65), 2**65), st.integers(0, 2**64 - 1), st.integers(0, 9).map(_Int))


def _forged_identity(value: int) -> Identity:
    """An `Identity` holding any int, out of u256 range included: the constructor refuses those, but the encoders
    must still agree on one that got past it (what C declines, the twin decides)."""
    identity = object.__new__(Identity)
    object.__setattr__(identity, "value", value)
    return identity


_identities = st.one_of(
    st.builds(Identity, st.integers(0, 2**256 - 1)),
    st.integers(-5, 2**257).map(_forged_identity),
    st.integers(0, 9).map(_Int).map(_forged_identity),
)
_odd_transactions = st.builds(
    CommittedTx,
    _numbers,
    st.builds(Timestamp, st.one_of(st.integers(-(2**63), 2**63 - 1), _numbers)),
    _texts,
    st.builds(Caller, _identities),
    _changes,
)
_rows_ok = st.lists(st.tuples(st.binary(max_size=60), st.just(())), max_size=6).map(tuple)
_transactions = st.builds(
    CommittedTx,
    st.integers(0, 2**64 - 1),
    st.builds(Timestamp, st.integers(-(2**63), 2**63 - 1)),
    st.text(max_size=20),
    st.builds(Caller, st.builds(Identity, st.integers(0, 2**256 - 1))),
    st.lists(st.builds(TableChange, st.text(max_size=12), _rows_ok, _rows_ok), max_size=4).map(tuple),
)


def _outcome(encode: Any, tx: Any) -> tuple[str, Any]:
    try:
        return "bytes", encode(tx)
    except Exception as exc:  # every refusal is compared, by type and text
        return "error", (type(exc), str(exc))


@given(_transactions)
def test_the_c_record_is_the_python_record_byte_for_byte(tx: CommittedTx) -> None:
    assert encode_record(tx) == encode_record_python(tx)


@given(_odd_transactions)
def test_odd_transactions_get_the_python_encoder_s_bytes_or_its_error(tx: CommittedTx) -> None:
    assert _outcome(encode_record, tx) == _outcome(encode_record_python, tx)


def test_a_batch_of_a_hundred_rows_and_a_large_row_are_written_as_python_writes_them() -> None:
    rows = tuple((bytes([n % 256]) * (n + 1), ()) for n in range(100))
    big = ((b"x" * 70_000, ()),)  # past the C writer's inline buffer: the growing path
    tx = CommittedTx(
        2**64 - 1,
        Timestamp(-(2**63)),
        "append_sync_events",
        Caller(Identity(2**256 - 1)),
        (TableChange("sync_event", rows, ()), TableChange("stream_head", big, rows[:1])),
    )
    assert encode_record(tx) == encode_record_python(tx)


def test_something_that_is_not_a_transaction_gets_the_python_encoder_s_error() -> None:
    assert _outcome(encode_record, object()) == _outcome(encode_record_python, object())
    assert _outcome(encode_record, object())[0] == "error"
