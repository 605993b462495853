"""The datastore keeps each row once, as its BSATN bytes, and still reads, indexes and rolls back exactly."""

from __future__ import annotations

from autopilot_sync.bindings.module import Module
from autopilot_sync.host.datastore import Datastore, RowMap
from autopilot_sync.host.hosted_module import PythonModule
from autopilot_sync.host.transaction import TableHandle, Transaction
from autopilot_sync.spacetime import algebraic as at

events = Module("rows-test")
events.table(
    "event",
    [("stream_id", at.STRING), ("seq", at.U64), ("key", at.STRING), ("body", at.STRING)],
    unique=[("stream_id", "seq")],
    indexes=[("stream_id", "key"), ("stream_id",)],
)


def _table() -> tuple[Datastore, Transaction, TableHandle]:
    datastore = Datastore(PythonModule(events))
    tx = Transaction(datastore)
    return datastore, tx, TableHandle(tx, datastore["event"])


def test_a_stored_row_is_kept_as_its_bytes_and_decoded_rows_are_bounded() -> None:
    datastore, _, table = _table()
    count = RowMap.CACHED * 4
    for seq in range(1, count + 1):
        table.insert(("s", seq, f"s:{seq}", "x" * 50))
    store = datastore["event"]
    assert len(store.rows) == count
    assert len(store.rows._cache) <= RowMap.CACHED
    # every row reads back equal to what was inserted, in insertion order, whether cached or decoded
    assert [row[1] for row in table] == list(range(1, count + 1))
    assert table.find(("stream_id", "seq"), ("s", 7)) == ("s", 7, "s:7", "x" * 50)


def test_a_non_unique_key_held_by_one_row_holds_the_row_bytes_not_a_set() -> None:
    datastore, _, table = _table()
    first = table.insert(("s", 1, "k", "a"))
    index = datastore["event"].indexes[("stream_id", "key")]
    assert type(index.entries[("s", "k")]) is bytes
    second = table.insert(("s", 2, "k", "b"))
    assert isinstance(index.entries[("s", "k")], set)
    assert sorted(table.filter(("stream_id", "key"), ("s", "k"))) == sorted([first, second])
    assert table.delete(first)
    assert type(index.entries[("s", "k")]) is bytes
    assert table.filter(("stream_id", "key"), ("s", "k")) == [second]
    assert table.delete(second)
    assert ("s", "k") not in index.entries


def test_rollback_restores_rows_and_every_index_exactly() -> None:
    datastore, _, table = _table()
    for seq in range(1, 4):
        table.insert(("s", seq, f"k{seq}", "v"))
    committed = Transaction(datastore)
    before = {name: dict(index.entries) for name, index in datastore["event"].indexes.items()}
    rows_before = list(datastore["event"].rows)
    later = TableHandle(committed, datastore["event"])
    later.insert(("s", 4, "k1", "dup key"))
    later.delete(("s", 2, "k2", "v"))
    committed.rollback()
    assert sorted(datastore["event"].rows) == sorted(rows_before)  # a rolled-back delete puts the row back last
    assert {name: dict(index.entries) for name, index in datastore["event"].indexes.items()} == before


def test_rows_stored_from_a_current_snapshot_index_exactly_as_decoded_rows_do() -> None:
    source, _, table = _table()
    for seq in range(1, 50):
        table.insert((f"s{seq % 3}", seq, f"k{seq % 7}", "body"))
    stored = list(source["event"].rows)
    decoded, fast, bulk = (Datastore(PythonModule(events))["event"] for _ in range(3))
    for row_bytes in stored:
        decoded.put(*decoded.stored(row_bytes))
        fast.put_current(row_bytes)
    bulk.load_current(stored)
    for loaded in (fast, bulk):
        assert list(loaded.rows) == list(decoded.rows) == stored
        assert {n: dict(i.entries) for n, i in loaded.indexes.items()} == {
            n: dict(i.entries) for n, i in decoded.indexes.items()
        }
        assert dict(loaded.rows.items()) == dict(decoded.rows.items())
