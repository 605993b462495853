"""The subscription engine without sockets: initial rows, deltas per query set, offsets, indexes, event tables."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from autopilot_sync.bindings.context import ReducerContext
from autopilot_sync.bindings.module import Module
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.host.sql import SelectPlan
from autopilot_sync.host.subscriptions import SubscriptionLimits, SubscriptionManager
from autopilot_sync.host.transaction import CommittedTx
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime.messages import (
    EventTableRows,
    PersistentTableRows,
    QueryRows,
    QuerySetUpdate,
    SubscribeApplied,
    SubscriptionError,
    UnsubscribeApplied,
)
from autopilot_sync.spacetime.values import ConnectionId, Identity

module = Module("streams")
event = module.table(
    "event",
    [("stream_id", at.STRING), ("seq", at.U64), ("payload", at.STRING)],
    unique=[("stream_id", "seq")],
)
ping = module.table("ping", [("text", at.STRING)], event=True)
EVENT_CODEC = bsatn.codec(event.row_type)


@module.reducer(("stream_id", at.STRING), ("seq", at.U64), ("payload", at.STRING))
def append(ctx: ReducerContext, stream_id: str, seq: int, payload: str) -> None:
    ctx.db.event.insert((stream_id, seq, payload))


@module.reducer(("stream_id", at.STRING), ("seq", at.U64), ("payload", at.STRING))
def rewrite(ctx: ReducerContext, stream_id: str, seq: int, payload: str) -> None:
    for row in ctx.db.event.filter(("stream_id", "seq"), (stream_id, seq)):
        ctx.db.event.delete(row)
    ctx.db.event.insert((stream_id, seq, payload))


@module.reducer(("text", at.STRING))
def shout(ctx: ReducerContext, text: str) -> None:
    ctx.db.ping.insert((text,))


CALLER = Caller(Identity(7), ConnectionId(7))


class Harness:
    def __init__(self, engine: HostEngine) -> None:
        self.engine = engine
        self.subs = SubscriptionManager(engine.datastore, lambda: engine.offset)
        self.updates: list[dict[Any, tuple[QuerySetUpdate, ...]]] = []
        engine.add_commit_listener(self._on_commit)

    def _on_commit(self, tx: CommittedTx) -> None:
        self.updates.append(self.subs.on_commit(tx))

    async def call(self, reducer: str, *args: Any) -> dict[Any, tuple[QuerySetUpdate, ...]]:
        before = len(self.updates)
        outcome = await self.engine.call_reducer(reducer, args, CALLER)
        assert outcome.tx is not None, outcome
        assert len(self.updates) == before + 1
        return self.updates[-1]


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    engine = HostEngine(module, tmp_path, "streams", EngineConfig(fsync=False))
    await engine.start()
    yield Harness(engine)
    await engine.stop()


def rows_of(query_rows: QueryRows) -> dict[str, list[tuple[Any, ...]]]:
    return {t.table: [tuple(EVENT_CODEC.decode(r)) for r in t.rows] for t in query_rows.tables}


def delta(update: QuerySetUpdate, table: str = "event") -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    (entry,) = next(t for t in update.tables if t.table_name == table).rows
    assert isinstance(entry, PersistentTableRows)
    return [tuple(EVENT_CODEC.decode(r)) for r in entry.inserts], [tuple(EVENT_CODEC.decode(r)) for r in entry.deletes]


async def test_resume_query_returns_missed_rows_then_new_ones(harness: Harness) -> None:
    for seq in (1, 2, 3):
        await harness.call("append", "a", seq, f"a{seq}")
    await harness.call("append", "b", 1, "b1")
    applied = harness.subs.subscribe("c1", 1, 10, ["SELECT * FROM event WHERE stream_id = 'a' AND seq > 1"])
    assert isinstance(applied, SubscribeApplied)
    assert rows_of(applied.rows) == {"event": [("a", 2, "a2"), ("a", 3, "a3")]}
    out = await harness.call("append", "a", 4, "a4")
    (update,) = out["c1"]
    assert update.query_set_id == 10
    assert delta(update) == ([("a", 4, "a4")], [])
    assert await harness.call("append", "b", 2, "b2") == {}


async def test_rows_matching_several_sets_appear_under_each_and_once_per_set(harness: Harness) -> None:
    subs = harness.subs
    assert isinstance(subs.subscribe("c1", 1, 1, ["SELECT * FROM event WHERE stream_id = 'a'"]), SubscribeApplied)
    both = ["SELECT * FROM event WHERE stream_id = 'a'", "SELECT * FROM event WHERE seq = 1"]
    assert isinstance(subs.subscribe("c1", 2, 2, both), SubscribeApplied)
    assert isinstance(subs.subscribe("c2", 3, 1, ["SELECT * FROM event"]), SubscribeApplied)
    out = await harness.call("append", "a", 1, "x")
    assert sorted(u.query_set_id for u in out["c1"]) == [1, 2]
    for update in out["c1"]:
        assert delta(update) == ([("a", 1, "x")], [])  # once per set even when two queries of set 2 match
    assert [u.query_set_id for u in out["c2"]] == [1]
    applied = subs.subscribe("c3", 4, 1, both)
    assert isinstance(applied, SubscribeApplied)
    assert rows_of(applied.rows) == {"event": [("a", 1, "x")]}


async def test_update_is_one_table_update_with_delete_and_insert(harness: Harness) -> None:
    await harness.call("append", "a", 1, "old")
    harness.subs.subscribe("c1", 1, 1, ["SELECT * FROM event WHERE stream_id = 'a'"])
    out = await harness.call("rewrite", "a", 1, "new")
    (update,) = out["c1"]
    assert delta(update) == ([("a", 1, "new")], [("a", 1, "old")])


async def test_transactions_before_the_snapshot_are_not_sent_twice(harness: Harness) -> None:
    engine = harness.engine
    outcome, sequence = engine.run_transaction("append", ("a", 1, "x"), CALLER)
    assert sequence is not None
    # Subscribed after the transaction ran but before it became durable: the snapshot already has the row.
    applied = harness.subs.subscribe("c1", 1, 1, ["SELECT * FROM event"])
    assert isinstance(applied, SubscribeApplied) and rows_of(applied.rows) == {"event": [("a", 1, "x")]}
    await engine.commitlog.wait_durable(sequence)
    assert harness.updates[-1] == {}
    out = await harness.call("append", "a", 2, "y")
    assert delta(out["c1"][0]) == ([("a", 2, "y")], [])
    del outcome


async def test_unsubscribe_and_remove_client_stop_deltas(harness: Harness) -> None:
    await harness.call("append", "a", 1, "x")
    subs = harness.subs
    subs.subscribe("c1", 1, 1, ["SELECT * FROM event WHERE stream_id = 'a'"])
    subs.subscribe("c1", 2, 2, ["SELECT * FROM event"])
    dropped = subs.unsubscribe("c1", 3, 1, send_dropped_rows=True)
    assert isinstance(dropped, UnsubscribeApplied) and dropped.rows is not None
    assert rows_of(dropped.rows) == {"event": [("a", 1, "x")]}
    assert subs.unsubscribe("c1", 4, 2) == UnsubscribeApplied(4, 2, None)
    assert isinstance(subs.unsubscribe("c1", 5, 2), SubscriptionError)
    assert await harness.call("append", "a", 2, "y") == {}
    subs.subscribe("c2", 1, 1, ["SELECT * FROM event WHERE stream_id = 'a'"])
    subs.remove_client("c2")
    assert await harness.call("append", "a", 3, "z") == {}
    assert subs._by_value == {} and subs._by_table == {}  # indexes cleaned up


async def test_an_unsubscribed_set_gets_the_updates_its_dropped_rows_include_and_then_none(harness: Harness) -> None:
    engine = harness.engine
    subs = harness.subs = SubscriptionManager(engine.datastore, lambda: engine.offset, lambda: engine.durable_offset)
    await harness.call("append", "a", 1, "x")
    a_only = ["SELECT * FROM event WHERE stream_id = 'a'"]
    a_from_1 = ["SELECT * FROM event WHERE stream_id = 'a' AND seq >= 1"]
    subs.subscribe("c1", 1, 1, a_only)
    subs.subscribe("c1", 2, 2, a_from_1)
    # The transaction runs now but is delivered after durability; set 2 is unsubscribed in between.
    _, sequence = engine.run_transaction("append", ("a", 2, "y"), CALLER)
    assert sequence is not None
    dropped = subs.unsubscribe("c1", 3, 2, send_dropped_rows=True)
    assert isinstance(dropped, UnsubscribeApplied) and dropped.rows is not None
    assert rows_of(dropped.rows) == {"event": [("a", 1, "x"), ("a", 2, "y")]}
    # The id is free at once; the new set's initial rows already hold the transaction.
    assert isinstance(subs.subscribe("c1", 4, 2, a_from_1), SubscribeApplied)
    await engine.commitlog.wait_durable(sequence)
    # The leaving set still gets the transaction its dropped rows include (so the client was sent every dropped row).
    assert sorted(u.query_set_id for u in harness.updates[-1]["c1"]) == [1, 2]
    out = await harness.call("append", "a", 3, "z")
    assert sorted(u.query_set_id for u in out["c1"]) == [1, 2]  # the new set 2 alone: no duplicate update
    assert isinstance(subs.unsubscribe("c1", 5, 2), UnsubscribeApplied)  # delivered: leaves at once
    out = await harness.call("append", "a", 4, "w")
    assert [u.query_set_id for u in out["c1"]] == [1]
    subs.remove_client("c1")
    assert subs._by_value == {} and subs._by_table == {} and subs._leaving == []


async def test_errors_register_nothing(harness: Harness) -> None:
    subs = harness.subs
    error = subs.subscribe("c1", 1, 1, ["SELECT * FROM event", "SELECT * FROM nope"])
    assert isinstance(error, SubscriptionError) and error.request_id == 1 and "no such table" in error.error
    assert subs.query_set_count("c1") == 0
    assert isinstance(subs.subscribe("c1", 2, 1, ["SELECT * FROM event"]), SubscribeApplied)
    duplicate = subs.subscribe("c1", 3, 1, ["SELECT * FROM event"])
    assert isinstance(duplicate, SubscriptionError) and "already subscribed" in duplicate.error


async def test_event_tables_arrive_as_event_rows(harness: Harness) -> None:
    applied = harness.subs.subscribe("c1", 1, 1, ["SELECT * FROM ping"])
    assert isinstance(applied, SubscribeApplied)
    out = await harness.call("shout", "hello")
    ((table,),) = [u.tables for u in out["c1"]]
    (entry,) = table.rows
    assert isinstance(entry, EventTableRows)
    assert [bsatn.codec(ping.row_type).decode(r) for r in entry.events] == [("hello",)]


async def test_equality_subscriptions_are_not_visited_by_unrelated_rows(harness: Harness) -> None:
    subs = harness.subs
    for i in range(5000):
        subs.subscribe(f"c{i}", i, 1, [f"SELECT * FROM event WHERE stream_id = 's{i}'"])
    visited = 0
    original = subs._candidates

    def counting(table: str, row: Any) -> Any:
        nonlocal visited
        for query in original(table, row):
            visited += 1
            yield query

    subs._candidates = counting  # type: ignore[method-assign]
    out = await harness.call("append", "s42", 1, "x")
    assert list(out) == ["c42"] and visited == 1


async def test_one_row_list_is_shared_by_identical_results(harness: Harness) -> None:
    for i in range(3):
        harness.subs.subscribe(f"c{i}", 1, 1, ["SELECT * FROM event WHERE stream_id = 'a'"])
    out = await harness.call("append", "a", 1, "x")
    lists = {id(u[0].tables[0].rows[0].inserts) for u in out.values()}  # type: ignore[union-attr]
    assert len(lists) == 1


async def test_clients_with_the_same_query_set_share_one_update_object(harness: Harness) -> None:
    subs = harness.subs
    query = "SELECT * FROM event WHERE stream_id = 'a'"
    for i in range(50):
        subs.subscribe(f"c{i}", 1, 7, [query])
    subs.subscribe("aliased", 1, 7, ["SELECT e.* FROM event AS e WHERE e.stream_id = 'a'"])  # same rows, same shape
    subs.subscribe("other-id", 1, 8, [query])  # another query set id: equal rows, but its own update
    assert subs.shape_count() == 2
    out = await harness.call("append", "a", 1, "x")
    assert len(out) == 52
    assert len({id(updates) for client, updates in out.items() if client != "other-id"}) == 1
    assert out["c0"] is out["aliased"] and out["c0"] is not out["other-id"]
    assert [u.query_set_id for u in out["other-id"]] == [8]
    assert delta(out["c0"][0]) == delta(out["other-id"][0]) == ([("a", 1, "x")], [])


async def test_clients_with_the_same_shapes_share_the_combined_tuple(harness: Harness) -> None:
    subs = harness.subs
    for client in ("c1", "c2"):
        subs.subscribe(client, 1, 1, ["SELECT * FROM event WHERE stream_id = 'a'"])
        subs.subscribe(client, 2, 2, ["SELECT * FROM event"])
    subs.subscribe("c3", 1, 2, ["SELECT * FROM event"])
    out = await harness.call("append", "a", 1, "x")
    assert out["c1"] is out["c2"] and len(out["c1"]) == 2
    assert sorted(u.query_set_id for u in out["c1"]) == [1, 2]
    assert [u.query_set_id for u in out["c3"]] == [2]


async def test_a_member_subscribed_after_the_transaction_is_skipped_but_not_its_shape_mates(
    harness: Harness,
) -> None:
    engine = harness.engine
    subs = harness.subs
    query = ["SELECT * FROM event WHERE stream_id = 'a'"]
    subs.subscribe("early", 1, 1, query)
    # The transaction runs now but is delivered after durability; "late" subscribes in between and sees it in its
    # initial rows, so only "early" gets it as a delta.
    outcome, sequence = engine.run_transaction("append", ("a", 1, "x"), CALLER)
    assert sequence is not None
    late = subs.subscribe("late", 2, 1, query)
    assert isinstance(late, SubscribeApplied) and rows_of(late.rows) == {"event": [("a", 1, "x")]}
    await engine.commitlog.wait_durable(sequence)
    assert list(harness.updates[-1]) == ["early"]
    del outcome
    out = await harness.call("append", "a", 2, "y")
    assert out["early"] is out["late"]


async def test_shapes_outlive_their_first_member_and_go_with_the_last(harness: Harness) -> None:
    subs = harness.subs
    query = ["SELECT * FROM event WHERE stream_id = 'a'"]
    subs.subscribe("c1", 1, 1, query)
    subs.subscribe("c2", 1, 1, query)
    subs.remove_client("c1")
    assert list(await harness.call("append", "a", 1, "x")) == ["c2"]
    assert subs.unsubscribe("c2", 2, 1) == UnsubscribeApplied(2, 1, None)
    assert subs.shape_count() == 0 and subs._by_value == {} and subs._by_table == {}
    assert await harness.call("append", "a", 2, "y") == {}


async def test_dropped_rows_list_tables_in_the_clients_own_query_order(harness: Harness) -> None:
    subs = harness.subs
    subs.subscribe("c1", 1, 1, ["SELECT * FROM event", "SELECT * FROM ping"])
    subs.subscribe("c2", 1, 1, ["SELECT * FROM ping", "SELECT * FROM event"])  # same shape, other order
    assert subs.shape_count() == 1
    dropped = subs.unsubscribe("c2", 2, 1, send_dropped_rows=True)
    assert isinstance(dropped, UnsubscribeApplied) and dropped.rows is not None
    assert [t.table for t in dropped.rows.tables] == ["ping", "event"]


async def test_a_commit_tests_each_distinct_query_once_however_many_sets_hold_it(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    subs = harness.subs
    subs.limits = SubscriptionLimits(1000, 256, 1000, max_unindexed_queries_per_connection=1000)
    for i in range(1000):  # one client, its full quota of sets, all the same query no index can route
        subs.subscribe("attacker", i, i, ["SELECT * FROM event WHERE seq = 1000000 OR seq = 1000001"])
    subs.subscribe("victim", 0, 1, ["SELECT * FROM event WHERE stream_id = 's'"])
    tested = 0
    original = SelectPlan.matches

    def counting(plan: SelectPlan, row: Any) -> bool:
        nonlocal tested
        tested += 1
        return original(plan, row)

    monkeypatch.setattr(SelectPlan, "matches", counting)
    out = await harness.call("append", "s", 1, "x")
    assert list(out) == ["victim"] and tested == 2


async def test_sets_with_equal_rows_share_one_table_update_and_each_client_one_tuple(harness: Harness) -> None:
    subs = harness.subs
    subs.limits = SubscriptionLimits(max_query_sets_per_connection=1000, max_queries_per_connection=1000)
    for i in range(1000):
        subs.subscribe("attacker", i, i, ["SELECT * FROM event WHERE seq >= 0"])
    out = await harness.call("append", "s", 1, "x")
    updates = out["attacker"]
    assert [u.query_set_id for u in updates] == list(range(1000))
    assert len({id(u.tables) for u in updates}) == 1


async def test_range_queries_that_cannot_match_are_not_tested(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    subs = harness.subs
    subs.limits = SubscriptionLimits(max_query_sets_per_connection=1000, max_queries_per_connection=1000)
    for i in range(1000):  # one client's quota of distinct range queries, none of which the commit can match
        subs.subscribe("attacker", i, i, [f"SELECT * FROM event WHERE seq > {1_000_000 + i}"])
    subs.subscribe("victim", 0, 1, ["SELECT * FROM event WHERE seq < 10"])
    tested = 0
    original = SelectPlan.matches

    def counting(plan: SelectPlan, row: Any) -> bool:
        nonlocal tested
        tested += 1
        return original(plan, row)

    monkeypatch.setattr(SelectPlan, "matches", counting)
    out = await harness.call("append", "s", 1, "x")
    assert list(out) == ["victim"] and tested == 1


async def test_range_queries_match_exactly_at_their_bounds(harness: Harness) -> None:
    subs = harness.subs
    ops = (">", ">=", "<", "<=")
    for i, op in enumerate(ops):
        subs.subscribe("c", i, i, [f"SELECT * FROM event WHERE seq {op} 5 AND payload != 'never'"])
    got = {}
    for seq in (4, 5, 6):
        out = await harness.call("append", "s", seq, "x")
        got[seq] = sorted(ops[u.query_set_id] for u in out.get("c", ()))
    assert got == {4: ["<", "<="], 5: ["<=", ">="], 6: [">", ">="]}
    for i in range(len(ops)):
        subs.unsubscribe("c", 10 + i, i)
    assert await harness.call("append", "s", 7, "x") == {}
