"""Rows of a table without a primary key are checked when they arrive and decoded only when read.

A catch-up lands thousands of `sync_event` rows; the cache keeps their bytes and builds a row object when a callback,
`rows()` or a change asks for it. What must not change: a row that would not decode still spoils the whole message
before the cache sees any of it, and what readers get is exactly what decoding at once gave.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autopilot_sync.client import ClientSchema
from autopilot_sync.client.cache import ChangeCause, ChangeKind, ClientCache, RowBatch, RowChange
from autopilot_sync.client.errors import ProtocolError, ProtocolErrorKind
from autopilot_sync.client.updates import ops_from_query_rows, ops_from_transaction
from autopilot_sync.module import module as sync
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime import messages as m
from autopilot_sync.spacetime.bsatn_check import NATIVE, RowsDoNotDecodeError, packed_checker, row_list_checker
from autopilot_sync.spacetime.errors import DecodeError
from autopilot_sync.spacetime.values import Timestamp

SYNC = ClientSchema.from_json(sync.schema_json())
ROW_TYPE = sync.tables["sync_event"].row_type
EVENT = SYNC.table("sync_event")


def _event(seq: int, payload: str = "{}", kind: str = "k") -> bytes:
    values = ("s", seq, f"s:{seq}", kind, payload, "h", Timestamp(seq), Timestamp(-seq), 7, "c")
    return bsatn.encode(ROW_TYPE, values)


def _rows(raws: list[bytes]) -> m.QueryRows:
    return m.QueryRows((m.SingleTableRows("sync_event", m.BsatnRowList.from_rows(raws)),))


class _Counting:
    """A row class that counts how many rows were built (the SDK accepts any class taking the columns)."""

    built = 0

    def __init__(self, *values: Any) -> None:
        type(self).built += 1
        self.values = values

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Counting) and other.values == self.values

    def __hash__(self) -> int:
        return hash(self.values)


def _counting_schema() -> tuple[ClientSchema, type[_Counting]]:
    counting = type("CountingEvent", (_Counting,), {"built": 0})
    return SYNC.with_row_types({"sync_event": counting}), counting


def test_a_catch_up_is_applied_without_building_a_row_until_one_is_read() -> None:
    schema, counting = _counting_schema()
    raws = [_event(seq) for seq in range(1, 501)]
    cache = ClientCache()
    changes = cache.apply(ops_from_query_rows(schema, 1, _rows(raws), insert=True), ChangeCause.SUBSCRIBE_APPLIED)
    assert len(changes) == 500 and cache.count("sync_event") == 500 and cache.query_set_size(1) == 500
    assert counting.built == 1, "only the first row is decoded up front (it proves the row class fits)"
    assert changes[10].new.values[1] == 11
    assert counting.built == 2
    rows = cache.rows("sync_event")
    assert counting.built == 501, "each row is decoded once, then kept"
    assert cache.rows("sync_event") == rows and counting.built == 501
    assert rows == [row for _, row in schema.table("sync_event").decode_rows(raws)]


def test_the_changes_of_a_catch_up_read_as_the_list_of_its_inserts_in_order() -> None:
    raws = [_event(seq) for seq in range(1, 41)]
    cache = ClientCache()
    batches: list[list[int]] = []
    cache.on_batch(lambda changes: batches.append([change.new.seq for change in changes]))
    changes = cache.apply(ops_from_query_rows(SYNC, 1, _rows(raws), insert=True), ChangeCause.SUBSCRIBE_APPLIED)
    expected = [
        RowChange(ChangeKind.INSERT, "sync_event", None, row, ChangeCause.SUBSCRIBE_APPLIED)
        for _, row in EVENT.decode_rows(raws)
    ]
    assert len(changes) == 40 and changes == expected and list(changes) == expected
    assert changes[-1] == expected[-1] and changes[3:6] == expected[3:6]
    assert changes[0].new is cache.rows("sync_event")[0], "a change reads the row the cache keeps"
    assert batches == [list(range(1, 41))]
    with pytest.raises(IndexError):
        changes[40]


def test_rows_never_read_leave_through_a_resync_and_an_unsubscribe_with_their_rows() -> None:
    cache = ClientCache()
    raws = [_event(seq) for seq in range(1, 21)]
    changes = cache.apply(ops_from_query_rows(SYNC, 1, _rows(raws), insert=True), ChangeCause.SUBSCRIBE_APPLIED)
    cache.begin_resync()  # a reconnect: the server sends the rows again, all but the first
    cache.apply(ops_from_query_rows(SYNC, 1, _rows(raws[1:]), insert=True), ChangeCause.SUBSCRIBE_APPLIED)
    assert [(change.kind, change.old.seq) for change in cache.end_resync()] == [(ChangeKind.DELETE, 1)]
    released = cache.release_query_set(1, ChangeCause.UNSUBSCRIBED)
    assert sorted(change.old.seq for change in released) == list(range(2, 21)) and cache.count("sync_event") == 0
    assert [change.new.seq for change in changes] == list(range(1, 21)), "changes outlive the rows' entries"


def test_an_insert_callback_sees_every_row_of_a_lazily_kept_catch_up_in_order() -> None:
    cache = ClientCache()
    seen: list[int] = []
    cache.on_insert("sync_event", lambda row: seen.append(row.seq))
    cache.apply(ops_from_query_rows(SYNC, 1, _rows([_event(s) for s in range(1, 51)]), True), ChangeCause.TRANSACTION)
    assert seen == list(range(1, 51))


def test_rows_released_by_an_unsubscribe_come_back_as_delete_changes_with_their_rows() -> None:
    cache = ClientCache()
    raws = [_event(seq) for seq in range(1, 21)]
    cache.apply(ops_from_query_rows(SYNC, 1, _rows(raws), insert=True), ChangeCause.SUBSCRIBE_APPLIED)
    changes = cache.release_query_set(1, ChangeCause.UNSUBSCRIBED)
    assert {change.kind for change in changes} == {ChangeKind.DELETE}
    assert sorted(change.old.seq for change in changes) == list(range(1, 21))
    assert cache.count("sync_event") == 0


def test_a_row_two_query_sets_hold_is_kept_once_and_leaves_with_the_last() -> None:
    cache = ClientCache()
    raws = [_event(seq) for seq in range(1, 11)]
    cache.apply(ops_from_query_rows(SYNC, 1, _rows(raws), insert=True), ChangeCause.SUBSCRIBE_APPLIED)
    again = cache.apply(ops_from_query_rows(SYNC, 2, _rows(raws[5:]), insert=True), ChangeCause.SUBSCRIBE_APPLIED)
    assert again == [] and cache.count("sync_event") == 10
    assert cache.release_query_set(1, ChangeCause.UNSUBSCRIBED) and cache.count("sync_event") == 5
    assert sorted(row.seq for row in cache.rows("sync_event")) == [6, 7, 8, 9, 10]


def test_a_row_repeated_inside_one_message_is_held_twice_and_reported_once() -> None:
    cache = ClientCache()
    raws = [_event(1), _event(2), _event(1)]
    changes = cache.apply(ops_from_query_rows(SYNC, 1, _rows(raws), insert=True), ChangeCause.SUBSCRIBE_APPLIED)
    assert [change.new.seq for change in changes] == [1, 2]
    assert cache.count("sync_event") == 2 and cache.query_set_size(1) == 3


def test_a_trim_deletes_lazily_kept_rows_and_inserts_new_ones_in_one_transaction() -> None:
    cache = ClientCache()
    raws = [_event(seq) for seq in range(1, 6)]
    cache.apply(ops_from_query_rows(SYNC, 1, _rows(raws), insert=True), ChangeCause.SUBSCRIBE_APPLIED)
    table_rows = m.PersistentTableRows(
        inserts=m.BsatnRowList.from_rows([_event(6)]), deletes=m.BsatnRowList.from_rows(raws[:2])
    )
    update = m.TransactionUpdate((m.QuerySetUpdate(1, (m.TableUpdate("sync_event", (table_rows,)),)),))
    changes = cache.apply(ops_from_transaction(SYNC, update), ChangeCause.TRANSACTION)
    assert sorted((c.kind.value, c.row.seq) for c in changes) == [("delete", 1), ("delete", 2), ("insert", 6)]
    assert sorted(row.seq for row in cache.rows("sync_event")) == [3, 4, 5, 6]


def _bad_utf8(raw: bytes) -> bytes:
    at = raw.index(b"{}")
    return raw[:at] + b"\xff" + raw[at + 1 :]


@pytest.mark.parametrize(
    "spoil",
    [
        lambda raw: raw[:-3],  # truncated
        lambda raw: raw + b"\x00",  # trailing byte
        _bad_utf8,  # invalid UTF-8 in a string
        lambda raw: struct.pack("<I", 9999) + raw[4:],  # a length running past the row
    ],
    ids=["truncated", "trailing", "utf8", "length"],
)
def test_one_bad_row_in_a_lazily_kept_catch_up_is_a_bad_row_error_and_the_cache_stays_empty(
    spoil: Callable[[bytes], bytes],
) -> None:
    raws = [_event(seq) for seq in range(1, 31)]
    raws[17] = spoil(raws[17])
    with pytest.raises(DecodeError) as decoded:
        EVENT.decode_rows(raws)
    cache = ClientCache()
    with pytest.raises(ProtocolError) as caught:
        cache.apply(ops_from_query_rows(SYNC, 1, _rows(raws), insert=True), ChangeCause.SUBSCRIBE_APPLIED)
    assert caught.value.kind is ProtocolErrorKind.BAD_ROW
    assert str(decoded.value) in str(caught.value), "the decoder's own message names the fault"
    assert cache.count("sync_event") == 0


def test_a_string_ending_inside_a_character_is_refused_even_when_the_next_string_completes_it() -> None:
    raw = _event(1, kind="\u00e9", payload="\u00e9")  # é is C3 A9: split it across kind and payload
    spoiled = raw.replace(b"\x02\x00\x00\x00\xc3\xa9", b"\x01\x00\x00\x00\xc3", 1)
    spoiled = spoiled.replace(b"\x02\x00\x00\x00\xc3\xa9", b"\x03\x00\x00\x00\xa9\xc3\xa9", 1)
    assert len(spoiled) == len(raw)
    with pytest.raises(DecodeError):
        EVENT.decode(spoiled)
    with pytest.raises(DecodeError):
        EVENT.check_rows([_event(2), spoiled])


def test_tables_with_a_primary_key_or_a_shape_the_checker_lacks_decode_at_once() -> None:
    assert EVENT.decodes_lazily
    assert not SYNC.table("stream_head").decodes_lazily  # primary key: the key is a decoded value
    ops = ops_from_query_rows(SYNC, 1, _rows([_event(1)]), insert=True)
    assert [type(op) for op in ops] == [RowBatch]


@settings(max_examples=300, deadline=None)
@given(
    texts=st.lists(st.text(max_size=12), min_size=4, max_size=4),
    seq=st.integers(0, 2**64 - 1),
    cut=st.integers(0, 200),
    flip_at=st.integers(0, 200),
    flip_to=st.integers(0, 255),
)
def test_the_row_checker_refuses_exactly_the_rows_the_decoder_refuses(
    texts: list[str], seq: int, cut: int, flip_at: int, flip_to: int
) -> None:
    values = (texts[0], seq, texts[1], texts[2], texts[3], "h", Timestamp(1), Timestamp(2), 3, "c")
    raw = bytearray(bsatn.encode(ROW_TYPE, values))
    if flip_at < len(raw):
        raw[flip_at] = flip_to
    data = bytes(raw[: len(raw) - cut % 3]) if cut % 5 == 0 else bytes(raw)
    checker = row_list_checker(ROW_TYPE, SYNC.typespace)
    packed = packed_checker(ROW_TYPE, SYNC.typespace)
    assert checker is not None and packed is not None
    try:
        EVENT.decode(data)
        decodes = True
    except DecodeError:
        decodes = False
    try:
        checker([data])
        passes = True
    except RowsDoNotDecodeError:
        passes = False
    assert passes == decodes
    # The packed checker (compiled where built) over a row list with the row between two good ones.
    good = _event(1)
    try:
        listed = m.BsatnRowList(m.RowOffsets((0, len(good), len(good) + len(data))), good + data + good)
        assert packed(listed) == [good, data, good]
        packed_passes = True
    except RowsDoNotDecodeError:
        packed_passes = False
    assert packed_passes == decodes


def _utf8_verdicts(text: bytes) -> tuple[bool, bool]:
    """(the packed checker passes, Python's strict decoder accepts) for a row whose payload's bytes are `text`."""
    base = bsatn.encode(ROW_TYPE, ("s", 1, "k", "x", "P", "h", Timestamp(1), Timestamp(2), 3, "c"))
    at = base.index(b"\x01\x00\x00\x00P")  # the payload: its length, then its one byte
    raw = base[:at] + struct.pack("<I", len(text)) + text + base[at + 5 :]
    packed = packed_checker(ROW_TYPE, SYNC.typespace)
    assert packed is not None
    try:
        text.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    try:
        assert packed(m.BsatnRowList(m.RowOffsets((0,)), raw)) == [raw]
        passes = True
    except RowsDoNotDecodeError:
        passes = False
    return passes, valid


@settings(max_examples=500, deadline=None)
@given(text=st.binary(max_size=12) | st.text(max_size=6).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_the_packed_row_checker_reads_utf8_as_pythons_strict_decoder(text: bytes) -> None:
    passes, valid = _utf8_verdicts(text)
    assert passes == valid


@pytest.mark.parametrize(
    "text",
    [b"\xc0\x80", b"\xe0\x80\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xe2\x82", b"\x80"],
    ids=["overlong2", "overlong3", "surrogate", "above-max", "f5", "truncated", "continuation"],
)
def test_the_packed_row_checker_refuses_what_strict_utf8_refuses(text: bytes) -> None:
    assert _utf8_verdicts(text) == (False, False)
    assert _utf8_verdicts(b"ok \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") == (True, True)


def test_the_packed_row_checker_splits_fixed_size_lists_and_refuses_a_spoiled_one() -> None:
    packed = packed_checker(ROW_TYPE, SYNC.typespace)
    assert packed is not None
    raws = [_event(seq) for seq in range(1, 10)]  # one-digit seqs: every row the same size
    listed = m.BsatnRowList.from_rows(raws)
    assert isinstance(listed.size_hint, m.FixedSize) and packed(listed) == raws
    assert packed(m.BsatnRowList.empty()) == []
    with pytest.raises(RowsDoNotDecodeError):
        packed(m.BsatnRowList.from_rows([*raws[:4], _bad_utf8(raws[4]), *raws[5:]]))


def test_the_compiled_row_checker_is_the_one_used_where_it_was_built() -> None:
    from importlib.util import find_spec

    built = find_spec("autopilot_sync.spacetime._rowlist") is not None
    assert built is NATIVE


def test_a_table_wider_than_the_compiled_checker_reads_is_checked_in_python_not_refused_with_a_value_error() -> None:
    """The compiled checker walks at most 256 fields; a server may define a wider key-less table, whose rows must
    still be checked (and a bad one refused with `RowsDoNotDecodeError`), never fail with the C layer's
    `ValueError`."""
    from autopilot_sync.spacetime import algebraic as at

    wide = at.product(*((f"c{i}", at.U8) for i in range(300)))
    packed = packed_checker(wide, ())
    assert packed is not None
    rows = [bytes([i % 256] * 300) for i in range(3)]
    assert packed(m.BsatnRowList.from_rows(rows)) == rows
    with pytest.raises(RowsDoNotDecodeError):
        packed(m.BsatnRowList.from_rows([rows[0], rows[1][:-1]]))
