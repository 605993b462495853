"""The log table kind (`host/logtable.py`) answers every read exactly as the generic row store does.

A log-shaped table and the same table stored generically (`RowMap` and sorted indexes) are driven through the same
random sequences of inserts, deletes, updates and rollbacks; after each step every read a plan or reducer can make
(membership, decoded rows, point lookups, prefix lookups, seq ranges, the other index) must agree. Rows with equal
keys of a non-unique index are compared as sets: the generic store keeps them in a set, i.e. in no order.

A `str` subclass (a `StrEnum` member, a module's own key type) is taken and found as the string it is: values decoded
from BSATN or JSON are plain `str`, so no subclass arrives over the wire, but a Python module's reducer can build one
and hand it to `insert` or `find`; the row encoder accepts any `str` and the generic store compares keys by value.
"""

from __future__ import annotations

import enum
import zlib
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from autopilot_sync.bindings.context import ReducerContext
from autopilot_sync.bindings.module import Module
from autopilot_sync.bindings.reducers import ReducerError
from autopilot_sync.bindings.tables import TableDef
from autopilot_sync.host.call_outcome import CallStatus
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.datastore import TOP, Datastore, TableStore
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.host.logtable import LogRows, RowRun, is_log_shaped, segment_rows
from autopilot_sync.host.snapshot import _CODEC_V1, _HEADER, MAGIC_V1, Snapshot, read_snapshot, write_snapshot
from autopilot_sync.host.transaction import Transaction
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime.rowlist import BsatnRowList
from autopilot_sync.spacetime.values import ConnectionId, Identity

COLUMNS = (("stream_id", at.STRING), ("seq", at.U64), ("key", at.STRING), ("payload", at.STRING))
LOG = TableDef("events", COLUMNS, unique=(("stream_id", "seq"),), indexes=(("stream_id", "key"), ("stream_id",)))


def _generic(table: TableDef) -> TableStore:
    """The same table stored generically: shape rule switched off for this one store (a test double by name)."""
    store = TableStore.__new__(TableStore)
    original = is_log_shaped
    import autopilot_sync.host.datastore as datastore_module

    datastore_module.is_log_shaped = lambda _table: False  # type: ignore[assignment]
    try:
        store.__init__(table)  # type: ignore[misc]
    finally:
        datastore_module.is_log_shaped = original
    return store


def _transaction() -> Transaction:
    """A transaction over stores driven directly (no datastore of a module around them)."""
    datastore = Datastore.__new__(Datastore)
    datastore.tables = {}
    return Transaction(datastore)


def test_the_shape_rule_picks_partition_and_seq_tables_only() -> None:
    assert is_log_shaped(LOG)
    assert isinstance(TableStore(LOG).rows, LogRows)
    assert not isinstance(_generic(LOG).rows, LogRows)
    assert not is_log_shaped(TableDef("t", COLUMNS, primary_key="key", unique=(("stream_id", "seq"),)))
    assert not is_log_shaped(TableDef("t", COLUMNS, unique=(("seq", "stream_id"),)))
    assert not is_log_shaped(TableDef("t", COLUMNS, unique=(("stream_id", "seq"),), indexes=(("key",),)))
    assert not is_log_shaped(TableDef("t", COLUMNS, unique=(("stream_id", "seq"),), event=True))
    assert not is_log_shaped(TableDef("t", COLUMNS, unique=(("stream_id", "seq"), ("key",))))


Op = tuple[str, int, int, int]
ops = st.lists(
    st.tuples(
        st.sampled_from(["insert", "insert", "insert", "delete", "delete_head", "update", "rollback", "commit"]),
        st.integers(0, 2),  # stream
        st.integers(0, 30),  # seq
        st.integers(0, 3),  # key (duplicates allowed: the index is not unique)
    ),
    max_size=60,
)


def _row(stream: int, seq: int, key: int, payload: str = "p") -> tuple[Any, ...]:
    return (f"s{stream}", seq, f"k{key}", f"{payload}{seq}")


def _as_set(found: Any) -> frozenset[bytes]:
    return frozenset(found)


def _reads_agree(log: TableStore, generic: TableStore) -> None:
    assert len(log.rows) == len(generic.rows)
    assert set(log.rows) == set(generic.rows)
    for row_bytes in generic.rows:
        assert row_bytes in log.rows
        assert log.rows[row_bytes] == generic.rows[row_bytes]
    assert sorted(log.rows.items()) == sorted(generic.rows.items())
    for group in generic.indexes:
        a, b = log.indexes[group], generic.indexes[group]
        ordered = group == ("stream_id", "seq")
        for stream in range(3):
            for args in [(f"s{stream}",)]:
                _same(list(a.lookup(args)), list(b.lookup(args)), ordered)
            for seq_or_key in range(0, 32, 3):
                value: Any = seq_or_key if group[-1] == "seq" else f"k{seq_or_key % 5}"
                if len(group) == 2:
                    _same(list(a.lookup((f"s{stream}", value))), list(b.lookup((f"s{stream}", value))), ordered)
                    assert (a.entries.get((f"s{stream}", value)) is None) == (
                        b.entries.get((f"s{stream}", value)) is None
                    )
            if group == ("stream_id", "seq"):
                for low in (0, 5, 17):
                    for inclusive in ((True, True), (False, True)):
                        _same(
                            list(a.range((f"s{stream}", low), (f"s{stream}", TOP), inclusive)),
                            list(b.range((f"s{stream}", low), (f"s{stream}", TOP), inclusive)),
                            True,
                        )
                    _same(
                        list(a.range((f"s{stream}",), (f"s{stream}", low), (True, False))),
                        list(b.range((f"s{stream}",), (f"s{stream}", low), (True, False))),
                        True,
                    )
        _same(list(a.range(None, None)), list(b.range(None, None)), ordered)
        _same(list(a.range(("s1",), None)), list(b.range(("s1",), None)), ordered)


def _same(log_found: list[bytes], generic_found: list[bytes], ordered: bool) -> None:
    if ordered:
        assert log_found == generic_found
    else:
        assert sorted(log_found) == sorted(generic_found)


@settings(max_examples=60, deadline=None)
@given(ops)
def test_a_log_table_reads_as_the_generic_store_on_random_operations(sequence: list[Op]) -> None:
    stores = (TableStore(LOG), _generic(LOG))
    assert isinstance(stores[0].rows, LogRows) and not isinstance(stores[1].rows, LogRows)
    txs = [_transaction(), _transaction()]
    for verb, stream, seq, key in sequence:
        for i, store in enumerate(stores):
            tx = txs[i]
            if verb == "insert":
                try:
                    tx.insert(store, _row(stream, seq, key))
                except Exception as exc:  # a duplicate (stream, seq) with other columns: both stores refuse it
                    assert "unique_violation" in str(exc)
            elif verb == "delete":
                tx.delete_bytes(store, store.encode(_row(stream, seq, key)))
            elif verb == "delete_head":
                head = next(iter(store.indexes[("stream_id", "seq")].lookup((f"s{stream}",))), None)
                if head is not None:
                    tx.delete_bytes(store, head)
            elif verb == "update":
                old = next(iter(store.indexes[("stream_id", "seq")].lookup((f"s{stream}", seq))), None)
                if old is not None:
                    tx.delete_bytes(store, old)
                    tx.insert(store, _row(stream, seq, key, "updated"))
            elif verb == "rollback":
                tx.rollback()
            else:
                txs[i] = _transaction()
        _reads_agree(*stores)


def test_trimming_a_long_partition_compacts_it_and_rollback_restores_it() -> None:
    store = TableStore(LOG)
    tx = _transaction()
    for seq in range(1, 3001):
        tx.insert(store, _row(0, seq, seq))
    tx = _transaction()
    trimmed = list(store.indexes[("stream_id",)].lookup(("s0",)))[:2000]
    for row_bytes in trimmed:
        assert tx.delete_bytes(store, row_bytes)
    assert isinstance(store.rows, LogRows)
    part = store.rows.partitions["s0"]
    assert (len(part.seqs), part.head) == (1500, 500), "compacted once half the partition (1,500 rows) was dead"
    assert [store.rows[b][1] for b in store.indexes[("stream_id",)].lookup(("s0",))] == list(range(2001, 3001))
    assert list(store.indexes[("stream_id", "key")].lookup(("s0", "k2500"))) == [store.encode(_row(0, 2500, 2500))]
    assert not list(store.indexes[("stream_id", "key")].lookup(("s0", "k5")))
    tx.rollback()
    assert [store.rows[b][1] for b in store.indexes[("stream_id",)].lookup(("s0",))] == list(range(1, 3001))
    assert list(store.indexes[("stream_id", "key")].lookup(("s0", "k5"))) == [store.encode(_row(0, 5, 5))]


def test_a_long_range_of_a_trimmed_partition_is_a_packed_run_of_the_same_rows() -> None:
    store = TableStore(LOG)
    tx = _transaction()
    for seq in range(1, 3001):
        tx.insert(store, _row(0, seq, seq))
    tx = _transaction()
    for row_bytes in list(store.indexes[("stream_id",)].lookup(("s0",)))[:2000]:
        assert tx.delete_bytes(store, row_bytes)  # compacts once half is dead: offsets start at a later row
    index = store.indexes[("stream_id", "seq")]
    expected = [store.encode(_row(0, seq, seq)) for seq in range(2401, 3001)]
    run = index.range(("s0", 2400), ("s0", TOP), (False, True))
    assert isinstance(run, RowRun) and len(run) == 600
    assert run.row_list() == BsatnRowList.from_rows(expected) and list(run) == expected
    tx.insert(store, _row(0, 3001, 3001))  # the partition's buffer grows after a run was taken
    assert list(index.range(("s0", 2400), ("s0", TOP), (False, True))) == [*expected, store.encode(_row(0, 3001, 3001))]


def test_a_log_table_snapshot_is_its_buffers_and_loads_back_to_the_same_reads(tmp_path: Path) -> None:
    store, generic = TableStore(LOG), _generic(LOG)
    tx = _transaction()
    for seq in range(1, 200):
        for target in (store, generic):
            tx.insert(target, _row(seq % 3, seq, seq % 7))
    for row_bytes in list(store.indexes[("stream_id", "seq")].lookup(("s1",)))[:20]:  # a trimmed head
        tx.delete_bytes(store, row_bytes)
        tx.delete_bytes(generic, row_bytes)
    assert isinstance(store.rows, LogRows)
    path = write_snapshot(tmp_path, Snapshot(5, "h", {}, {"events": store.rows.segments()}))
    loaded = read_snapshot(path)
    assert loaded.tables == {} and list(loaded.logs) == ["events"]
    fresh = TableStore(LOG)
    assert isinstance(fresh.rows, LogRows)
    fresh.rows.load_segments(loaded.logs["events"])
    _reads_agree(fresh, generic)
    assert sorted(segment_rows(loaded.logs["events"])) == sorted(generic.rows)


def test_a_snapshot_written_before_log_tables_still_loads(tmp_path: Path) -> None:
    rows = [TableStore(LOG).encode(_row(0, seq, seq)) for seq in (1, 2, 3)]
    body = _CODEC_V1.encode((7, "h", [("events", rows)]))
    path = tmp_path / "00000000000000000007.snap"
    path.write_bytes(_HEADER.pack(MAGIC_V1, zlib.crc32(body)) + body)
    loaded = read_snapshot(path)
    assert (loaded.offset, loaded.tables, loaded.logs) == (7, {"events": rows}, {})


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 5), st.text(max_size=6)), max_size=60),
    st.integers(1, 7),
)
def test_a_replayed_row_is_stored_exactly_as_an_inserted_one(items: list[tuple[int, int, str]], per_tx: int) -> None:
    """`put_current` and `put_current_many` (the log replayed at start, hashing the idempotency key from the row's
    bytes; runs of one partition appended at once) and `put` (a reducer's insert, hashing the decoded key) leave the
    same partitions, hash arrays included."""
    replayed, batched, inserted, generic = TableStore(LOG), TableStore(LOG), TableStore(LOG), _generic(LOG)
    next_seq = [1, 1, 1]
    pending: list[bytes] = []
    for stream, key, payload in items:
        row = (f"s{stream}", next_seq[stream], f"k{key}é", payload)
        next_seq[stream] += 1
        row_bytes = inserted.encode(inserted.make_row(row))
        replayed.put_current(row_bytes)
        pending.append(row_bytes)
        if len(pending) == per_tx:
            batched.put_current_many(pending)
            pending = []
        inserted.put(row_bytes, inserted.make_row(row))
        generic.put(row_bytes, generic.make_row(row))
    batched.put_current_many(pending)
    for store in (replayed, batched):
        assert isinstance(store.rows, LogRows) and isinstance(inserted.rows, LogRows)
        assert store.rows.partitions.keys() == inserted.rows.partitions.keys()
        for name, part in store.rows.partitions.items():
            other = inserted.rows.partitions[name]
            assert (part.seqs, part.ends, bytes(part.buf), part.hashes) == (
                other.seqs,
                other.ends,
                bytes(other.buf),
                other.hashes,
            )
        _reads_agree(store, generic)


def test_an_append_past_the_partition_end_takes_the_short_path_and_every_other_insert_is_still_checked() -> None:
    """`LogRows.append_new` skips the presence and unique checks only for a row beyond its partition's last seq;
    a row at or below it (the same bytes, another row at a taken seq) meets the checks as before."""
    import pytest

    from autopilot_sync.host.datastore import UniqueConstraintError

    store = TableStore(LOG)
    tx = _transaction()
    assert isinstance(store.rows, LogRows)
    assert store.rows.append_new(store.encode(_row(0, 1, 1)), _row(0, 1, 1))
    assert not store.rows.append_new(store.encode(_row(0, 1, 1)), _row(0, 1, 1)), "its seq is no longer past the end"
    for seq in (2, 3):
        tx.insert(store, _row(0, seq, seq))
    tx.insert(store, _row(0, 3, 3))  # the same row again: a no-op
    assert len(store.rows) == 3
    with pytest.raises(UniqueConstraintError):
        tx.insert(store, _row(0, 3, 9))  # another row at a taken (stream, seq)
    tx.rollback()
    assert [store.rows[b][1] for b in store.indexes[("stream_id",)].lookup(("s0",))] == [1]


class Stream(enum.StrEnum):
    """A module's stream names as an enum: members are `str` subclasses."""

    RUNS = "runs"


class Key(str):
    """A module's own key type."""


module = Module("str-keys")
module.table(
    "event",
    [("stream_id", at.STRING), ("seq", at.U64), ("key", at.STRING), ("body", at.STRING)],
    unique=[("stream_id", "seq")],
    indexes=[("stream_id", "key"), ("stream_id",)],
)


@module.reducer(("seq", at.U64))
def append(ctx: ReducerContext, seq: int) -> None:
    """Insert with subclass values, then find the row by them."""
    ctx.db.event.insert((Stream.RUNS, seq, Key(f"k{seq}"), "body"))
    if ctx.db.event.find(("stream_id", "key"), (Stream.RUNS, Key(f"k{seq}"))) is None:
        raise ReducerError("not found by its subclass key")
    if ctx.db.event.find(("stream_id", "seq"), (Stream.RUNS, seq)) is None:
        raise ReducerError("not found by its subclass stream id")


async def test_a_module_inserts_and_finds_log_rows_by_str_subclass_keys(tmp_path: Path) -> None:
    engine = HostEngine(module, tmp_path, "str-keys", EngineConfig())
    await engine.start()
    caller = Caller(Identity(0xA11CE), ConnectionId(1), {"sub": "alice"})
    try:
        assert isinstance(engine.datastore["event"].rows, LogRows)
        for seq in (1, 2):
            outcome = await engine.call_reducer("append", (seq,), caller)
            assert outcome.status is CallStatus.COMMITTED, outcome.message
        rows = sorted(engine.datastore["event"].rows.values())
        assert rows == [("runs", 1, "k1", "body"), ("runs", 2, "k2", "body")]
        assert all(type(row[0]) is str and type(row[2]) is str for row in rows)
    finally:
        await engine.stop()


def test_every_log_table_read_by_a_str_subclass_key_answers_as_the_generic_store() -> None:
    stores = (TableStore(LOG), _generic(LOG))
    tx = _transaction()
    for store in stores:
        for seq in range(1, 300):
            tx.insert(store, (Key("s0"), seq, Key(f"k{seq % 5}"), "p"))
    log, generic = stores
    assert isinstance(log.rows, LogRows) and log.rows.partitions.keys() == {"s0"}
    reads: list[tuple[tuple[str, ...], str, tuple[Any, ...], tuple[Any, ...] | None]] = [
        (("stream_id", "key"), "lookup", (Key("s0"), Key("k3")), None),
        (("stream_id", "key"), "lookup", ("s0", Key("k3")), None),
        (("stream_id", "seq"), "lookup", (Key("s0"), 7), None),
        (("stream_id",), "lookup", (Key("s0"),), None),
        (("stream_id", "seq"), "range", (Key("s0"), 3), (Key("s0"), TOP)),
        (("stream_id", "seq"), "range", (Key("s0"),), (Key("s0"), 290)),
    ]
    for group, verb, first, second in reads:
        a, b = log.indexes[group], generic.indexes[group]
        found = list(a.lookup(first)) if verb == "lookup" else list(a.range(first, second))
        expected = list(b.lookup(first)) if verb == "lookup" else list(b.range(first, second))
        assert expected and sorted(found) == sorted(expected), (group, verb, first)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.text(max_size=6), min_size=1, max_size=40),
    st.booleans(),
    st.integers(0, 10),
    st.integers(0, 45),
    st.integers(0, 45),
)
def test_a_run_packed_in_c_is_the_row_list_of_the_python_twins_rows(
    payloads: list[str], same_length: bool, trimmed: int, first: int, stop: int
) -> None:
    """`RowRun` packs in C (`_rowlist.pack_run`) where it was compiled, else `BsatnRowList.from_rows` of
    `Partition.rows_between` (the one Python builder of stored rows): both make the same row list, size hint
    included (fixed-size rows and rows of several lengths), over a partition whose head was trimmed."""
    from autopilot_sync.host import logtable

    assert logtable._pack_run is not None, "the C extension is built in the dev environment"
    store = TableStore(LOG)
    tx = _transaction()
    for seq, text in enumerate(payloads, start=1):
        tx.insert(store, ("s0", seq, f"k{seq % 3}", "x" if same_length else text))
    for row_bytes in list(store.indexes[("stream_id",)].lookup(("s0",)))[: min(trimmed, len(payloads) - 1)]:
        assert tx.delete_bytes(store, row_bytes)
    assert isinstance(store.rows, LogRows)
    part = store.rows.partitions["s0"]
    first = min(part.head + first, len(part.seqs))
    stop = min(max(first, part.head + stop), len(part.seqs))
    compiled = RowRun(part, first, stop).row_list()
    saved, logtable._pack_run = logtable._pack_run, None
    try:
        twin = RowRun(part, first, stop).row_list()
    finally:
        logtable._pack_run = saved
    expected = BsatnRowList.from_rows(part.rows_between(first, stop))
    assert compiled == twin == expected
    assert list(RowRun(part, first, stop)) == part.rows_between(first, stop)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.booleans(), st.sampled_from(["same", "equal copy", "other"])), max_size=40)
)
def test_an_append_reuses_the_hash_of_its_key_lookup_only_for_that_very_string(
    steps: list[tuple[int, bool, str]],
) -> None:
    """`HashIndex.lookup` leaves the key's CRC for the append that follows (`LogRows.key_hint`); whatever was looked
    up before (the same string object, an equal copy, another key, a lookup that found nothing or none at all), each
    stored hash is the CRC-32 of the appended row's own key and every row is found by its key afterwards."""
    store = TableStore(LOG)
    assert isinstance(store.rows, LogRows)
    index = store.indexes[("stream_id", "key")]
    seq = 0
    for key_no, look_first, which in steps:
        seq += 1
        key = f"k{key_no}-{seq}"
        if look_first:
            assert list(index.lookup(("s0", key))) == []
        stored = {"same": key, "equal copy": "".join(list(key)), "other": f"x{key_no}"}[which]
        row = ("s0", seq, stored, f"p{seq}")
        assert store.rows.append_new(store.encode(row), row)
    if seq:
        part = store.rows.partitions["s0"]
        keys = [store.rows[b][2] for b in part.rows_between(part.head, len(part.seqs))]
        assert list(part.hashes[0]) == [zlib.crc32(k.encode("utf-8")) for k in keys]
        for n, k in enumerate(keys, start=1):
            assert [store.rows[b][1] for b in index.lookup(("s0", k))] == [
                m for m, other in enumerate(keys, start=1) if other == k
            ], n
