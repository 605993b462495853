"""A subscription's initial rows come from an index as the stored bytes, no row decoded, when the index answers the
whole predicate (a resume: `stream_id = 'x' AND seq > N`, alone or joined with a reader grant); every other query
gets exactly the rows a decoded scan would select."""

from __future__ import annotations

from typing import Any

import pytest

from autopilot_sync.bindings.module import Module
from autopilot_sync.host.datastore import Datastore
from autopilot_sync.host.hosted_module import PythonModule
from autopilot_sync.host.logtable import RowRun
from autopilot_sync.host.sql import JoinMirror, SqlContext, compile_query, plan_row_bytes, plan_rows
from autopilot_sync.host.transaction import TableHandle, Transaction
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime.rowlist import BsatnRowList

shop = Module("initial-rows-test")
shop.table(
    "event",
    [("stream_id", at.STRING), ("seq", at.U64), ("key", at.STRING), ("body", at.STRING)],
    unique=[("stream_id", "seq")],
    indexes=[("stream_id", "key"), ("stream_id",)],
    public=True,
)
shop.table(
    "reader",
    [("stream_id", at.STRING), ("who", at.STRING)],
    unique=[("stream_id", "who")],
    indexes=[("stream_id",)],
    public=True,
)

JOINED = "SELECT event.* FROM event JOIN reader ON event.stream_id = reader.stream_id WHERE "
COVERED = [
    "SELECT * FROM event WHERE stream_id = 's1' AND seq > 5",
    "SELECT * FROM event WHERE seq >= 5 AND stream_id = 's1' AND seq < 9",
    "SELECT * FROM event WHERE stream_id = 's2' AND seq <= 3",
    "SELECT * FROM event WHERE stream_id = 's1'",
    "SELECT * FROM event WHERE stream_id = 's1' AND key = 'k2'",
    "SELECT * FROM event WHERE stream_id = 'nobody' AND seq > 0",
    "SELECT * FROM event",
    JOINED + "reader.who = 'a' AND event.stream_id = 's1' AND event.seq > 2",
    JOINED + "reader.who = 'z' AND event.stream_id = 's1' AND event.seq > 2",
    JOINED + "event.stream_id = 's2' AND event.seq > 2",
]
DECODED = [
    "SELECT * FROM event WHERE seq > 5",
    "SELECT * FROM event WHERE stream_id = 's1' AND body = 'b3'",
    "SELECT * FROM event WHERE stream_id = 's1' OR seq = 2",
    "SELECT * FROM event WHERE stream_id = 's1' AND seq != 3",
    JOINED + "reader.who = 'a' AND event.seq > 2",
]


@pytest.fixture(name="datastore")
def _datastore() -> Datastore:
    datastore = Datastore(PythonModule(shop))
    tx = Transaction(datastore)
    events, readers = TableHandle(tx, datastore["event"]), TableHandle(tx, datastore["reader"])
    for stream in ("s1", "s2", "s3"):
        for seq in range(1, 13):
            events.insert((stream, seq, f"k{seq % 4}", f"b{seq}"))
    for stream, who in (("s1", "a"), ("s1", "b"), ("s2", "a")):
        readers.insert((stream, who))
    return datastore


def _refuse_decoding(datastore: Datastore) -> None:
    def refuse(_: bytes) -> Any:
        raise AssertionError("a row was decoded")

    for store in datastore.tables.values():
        store.rows._cache.clear()
        store.rows._decode = refuse  # type: ignore[method-assign]


@pytest.mark.parametrize("sql", COVERED)
def test_initial_rows_answered_by_an_index_are_the_stored_bytes_with_no_row_decoded(
    datastore: Datastore, sql: str
) -> None:
    plan = compile_query(sql, SqlContext(datastore, private_visible=True))
    expected = sorted(row_bytes for row_bytes, _ in plan_rows(plan, datastore))
    events = datastore["event"]
    _refuse_decoding(datastore)
    if "reader" in sql:
        datastore["reader"].rows._decode = datastore["reader"].decode  # type: ignore[method-assign]
    found = plan_row_bytes(plan, datastore)
    assert sorted(found) == expected
    if "seq" in sql and "event.*" not in sql:
        seqs = [events.decode(b)[1] for b in found]
        assert seqs == sorted(seqs), "a stream's rows come in seq order"


@pytest.mark.parametrize("sql", COVERED)
def test_a_partition_run_packs_into_the_row_list_its_rows_would_make(
    datastore: Datastore, sql: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RowRun, "SHORTEST", 1)  # the fixture's streams are short
    plan = compile_query(sql, SqlContext(datastore, private_visible=True))
    found = plan_row_bytes(plan, datastore)
    rows = list(plan_row_bytes(plan, datastore))
    if "seq" in sql and "'s1'" in sql and "'z'" not in sql:  # (no reader 'z': no rows at all)
        assert isinstance(found, RowRun), "a resume's range of one partition is passed on as a run"
    if isinstance(found, RowRun):
        assert len(found) == len(rows)
        assert found.row_list() == BsatnRowList.from_rows(rows)
        assert next(found) == rows[0] and list(found) == rows[1:], "read row by row, it yields the same rows"


@pytest.mark.parametrize("sql", DECODED)
def test_queries_no_index_answers_alone_select_exactly_what_a_decoded_scan_does(datastore: Datastore, sql: str) -> None:
    plan = compile_query(sql, SqlContext(datastore, private_visible=True))
    assert sorted(plan_row_bytes(plan, datastore)) == sorted(b for b, _ in plan_rows(plan, datastore))


def test_a_limit_on_covered_initial_rows_keeps_the_first_in_key_order(datastore: Datastore) -> None:
    plan = compile_query("SELECT * FROM event WHERE stream_id = 's1' AND seq > 5 LIMIT 3", SqlContext(datastore))
    assert [datastore["event"].decode(b)[1] for b in plan_row_bytes(plan, datastore)] == [6, 7, 8]


def test_a_join_mirror_of_the_events_table_holds_bytes_and_is_built_from_an_index_without_decoding(
    datastore: Datastore,
) -> None:
    events = datastore["event"]
    expected = {b: events.decode(b) for b in events.rows if events.decode(b)[0] == "s1"}
    _refuse_decoding(datastore)
    mirror = JoinMirror(events, 0, offset=1)
    assert all(value is None for bucket in mirror.by_value.values() for value in bucket.values())
    events.rows._decode = events.decode  # type: ignore[method-assign]
    assert mirror.get("s1") == expected
    assert mirror.get("nobody") == {}
