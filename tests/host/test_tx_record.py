"""The commit-log record: the direct encoder writes exactly the bytes of the record's declared BSATN type.

Recovery decodes records with `TX_RECORD`; `encode_record` writes them without the generic codec (it is on every
call's path), so the two must never differ: checked over generated transactions, and read back.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from autopilot_sync.host.caller import Caller
from autopilot_sync.host.transaction import CommittedTx, TableChange
from autopilot_sync.host.tx_record import TX_RECORD, decode_record, encode_record, record_offset
from autopilot_sync.spacetime.errors import DecodeError
from autopilot_sync.spacetime.values import Identity, Timestamp

_rows = st.lists(st.tuples(st.binary(max_size=40), st.just(())), max_size=4).map(tuple)
_changes = st.lists(st.builds(TableChange, st.text(max_size=12), _rows, _rows), max_size=4).map(tuple)
_transactions = st.builds(
    CommittedTx,
    st.integers(0, 2**64 - 1),
    st.builds(Timestamp, st.integers(-(2**63), 2**63 - 1)),
    st.text(max_size=20),
    st.builds(Caller, st.builds(Identity, st.integers(0, 2**256 - 1))),
    _changes,
)


def _generic(tx: CommittedTx) -> bytes:
    changes = [(c.table, [b for b, _ in c.inserts], [b for b, _ in c.deletes]) for c in tx.changes]
    return TX_RECORD.encode((tx.offset, tx.timestamp, tx.reducer, tx.caller.identity, changes))


@given(_transactions)
def test_the_direct_record_encoder_writes_the_bytes_of_the_declared_record_type(tx: CommittedTx) -> None:
    data = encode_record(tx)
    assert data == _generic(tx)
    offset, timestamp, reducer, identity, changes = TX_RECORD.decode(data)
    assert (offset, timestamp, reducer, identity) == (tx.offset, tx.timestamp, tx.reducer, tx.caller.identity)
    assert [tuple(c) for c in changes] == [
        (c.table, [b for b, _ in c.inserts], [b for b, _ in c.deletes]) for c in tx.changes
    ]
    assert record_offset(data) == tx.offset


def _generic_decode(data: bytes) -> object:
    try:
        offset, timestamp, _reducer, _identity, changes = TX_RECORD.decode(data)
    except DecodeError:
        return DecodeError
    return offset, timestamp.micros, [tuple(change) for change in changes]


def _direct_decode(data: bytes) -> object:
    try:
        return decode_record(data)
    except DecodeError:
        return DecodeError


@given(_transactions)
def test_recovery_s_direct_decoder_reads_what_the_declared_record_type_reads(tx: CommittedTx) -> None:
    data = encode_record(tx)
    assert _direct_decode(data) == _generic_decode(data)
    for cut in {0, 1, 8, 16, 19, 20, len(data) // 2, len(data) - 1}:  # truncated records: refused by both
        assert _direct_decode(data[: max(0, cut)]) is _generic_decode(data[: max(0, cut)]) is DecodeError
    assert _direct_decode(data + b"\0") is _generic_decode(data + b"\0") is DecodeError


@given(st.binary(max_size=120))
def test_recovery_s_direct_decoder_refuses_what_the_declared_record_type_refuses(data: bytes) -> None:
    assert (_direct_decode(data) is DecodeError) == (_generic_decode(data) is DecodeError)


def test_a_table_name_that_is_not_utf8_is_refused_by_the_direct_decoder() -> None:
    tx = CommittedTx(1, Timestamp(0), "r", Caller(Identity(1)), (TableChange("t", ((b"row", ()),), ()),))
    data = encode_record(tx).replace(b"\x01\x00\x00\x00t", b"\x01\x00\x00\x00\xff")
    assert _direct_decode(data) is _generic_decode(data) is DecodeError
