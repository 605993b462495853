"""A table's change stamp moves on every change of its rows and never returns to a value any store held.

A module trusts values it keeps between calls (`TableHandle.memo`) only while the stamp is the one it recorded
(`host/change_stamp.py`; the sync module's stream heads, round 8 "heads"): a change that left the stamp where it was
would make it read a stale row as the table's. Both row stores (`RowMap`, a log table's `LogRows`), every way
rows change: a transaction's writes, its rollback, a store made again.
"""

from __future__ import annotations

from typing import Any

from autopilot_sync.host.datastore import Datastore, RowMap
from autopilot_sync.host.hosted_module import PythonModule
from autopilot_sync.host.logtable import LogRows
from autopilot_sync.host.transaction import TableHandle, Transaction
from autopilot_sync.module import module
from autopilot_sync.spacetime.values import Timestamp


def sync_datastore() -> Datastore:
    return Datastore(PythonModule(module))


def head(stream: str, seq: int) -> tuple[Any, ...]:
    return (stream, seq, 1, 1, Timestamp(seq), "sha256:" + "0" * 64, "sha256:" + "0" * 64)


def event(stream: str, seq: int) -> tuple[Any, ...]:
    return (stream, seq, f"{stream}:{seq}", "k", "{}", "sha256:x", Timestamp(1), Timestamp(2), 1, "sha256:" + "1" * 64)


def test_every_write_and_every_undo_moves_the_stamp_of_a_row_map_table() -> None:
    datastore = sync_datastore()
    store = datastore["stream_head"]
    assert isinstance(store.rows, RowMap)
    tx = Transaction(datastore)
    table = TableHandle(tx, store)
    seen = [table.stamp]

    def moved() -> None:
        assert table.stamp not in seen
        seen.append(table.stamp)

    table.insert(head("a", 1))
    moved()
    old = table.update(head("a", 2))
    moved()
    table.update(head("a", 3), old=table.find("stream_id", "a"))
    moved()
    table.insert(head("b", 1))
    moved()
    assert table.delete_by("stream_id", "b") == 1
    moved()
    assert old is not None
    tx.rollback()
    moved()
    assert table.count() == 0


def test_every_write_and_every_undo_moves_the_stamp_of_a_log_table() -> None:
    datastore = sync_datastore()
    store = datastore["sync_event"]
    assert isinstance(store.rows, LogRows)
    tx = Transaction(datastore)
    table = TableHandle(tx, store)
    seen = [table.stamp]

    def moved() -> None:
        assert table.stamp not in seen
        seen.append(table.stamp)

    for seq in (1, 2, 3):
        table.insert(event("s", seq))
        moved()
    assert table.delete(event("s", 3))
    moved()
    assert table.delete(event("s", 1))
    moved()
    store.put_current_many([store.encode(event("t", 1)), store.encode(event("t", 2))])  # a replayed commit
    moved()
    tx.rollback()
    moved()


def test_a_store_made_again_never_shows_a_stamp_an_earlier_store_had() -> None:
    first = sync_datastore()
    stamps = {store.rows.stamp for store in first.tables.values()}
    assert len(stamps) == len(first.tables)
    second = sync_datastore()
    again = {store.rows.stamp for store in second.tables.values()}
    first.clear()  # recovery starting over: every store made again
    cleared = {store.rows.stamp for store in first.tables.values()}
    assert stamps.isdisjoint(again) and stamps.isdisjoint(cleared) and again.isdisjoint(cleared)


def test_the_memo_is_the_store_s_own_between_transactions_and_gone_with_it() -> None:
    datastore = sync_datastore()
    store = datastore["stream_head"]
    TableHandle(Transaction(datastore), store).memo["kept"] = "value"
    assert TableHandle(Transaction(datastore), store).memo == {"kept": "value"}
    assert TableHandle(Transaction(datastore), datastore["sync_event"]).memo == {}
    assert TableHandle(Transaction(sync_datastore()), sync_datastore()["stream_head"]).memo == {}
    datastore.clear()
    assert TableHandle(Transaction(datastore), datastore["stream_head"]).memo == {}


def test_an_update_told_the_stored_row_does_not_decode_it_again() -> None:
    """The replaced row comes from the caller once its encoding is the stored bytes: the net changes and the undo
    hold the same row a decode would have given; a row that is not the stored one is not taken."""
    datastore = sync_datastore()
    store = datastore["stream_head"]
    tx = Transaction(datastore)
    table = TableHandle(tx, store)
    stored = table.insert(table.row(*head("a", 1)))
    tx = Transaction(datastore)  # committed: the next transaction replaces it
    table = TableHandle(tx, store)
    decoded: list[bytes] = []
    rows = store.rows
    assert isinstance(rows, RowMap)
    real_decode = store.decode

    def counting(data: bytes) -> tuple[Any, ...]:
        decoded.append(data)
        return real_decode(data)

    rows._decode = counting  # a test double of the decoder: counts, then decodes as before
    rows._cache.clear()  # as after a few hundred other rows: the stored row is no longer kept decoded
    table.update(table.row(*head("a", 2)), old=stored)
    assert decoded == []
    ((deleted_bytes, deleted),) = tx.changes()[0].deletes
    assert deleted == real_decode(deleted_bytes) == stored

    rows._cache.clear()
    made_up = table.row(*head("a", 7))  # not the stored row (seq 2): ignored, the stored bytes are decoded
    table.update(table.row(*head("a", 3)), old=made_up)
    assert len(decoded) == 1
    tx.rollback()
    assert [tuple(row) for row in table] == [tuple(stored)]
