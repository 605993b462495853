"""Subscribed views in the subscription engine, without sockets or Node: multiset differences, the read-set skip,
one call per (view, caller) per commit, per-caller rows, and a view that fails after a commit.

`ViewModuleDouble` is a unit-test double: a Python module with views whose answers are computed here in Python (NOT
the runner; the real thing, a TypeScript module's views in a Node runner, is proven end to end in
`tests/tsbuild/test_views_on_host.py`). It counts its calls, so the tests can see when the engine calls a view.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from autopilot_sync.bindings.context import ReducerContext
from autopilot_sync.bindings.module import Module
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.datastore import Datastore
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.host.hosted_module import PythonModule
from autopilot_sync.host.subscriptions import SubscriptionManager
from autopilot_sync.host.view_call import ViewAnswer, ViewCallError
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime import moduledef as md
from autopilot_sync.spacetime.messages import PersistentTableRows, QuerySetUpdate, SubscribeApplied
from autopilot_sync.spacetime.values import ConnectionId, Identity

module = Module("viewed")
item = module.table("item", [("owner", at.U64), ("label", at.STRING)], unique=[("owner", "label")])
ping = module.table("ping", [("text", at.STRING)], event=True)
LABEL = at.product(("label", at.STRING))
LABEL_CODEC = bsatn.codec(LABEL)


@module.reducer(("owner", at.U64), ("label", at.STRING))
def add(ctx: ReducerContext, owner: int, label: str) -> None:
    ctx.db.item.insert((owner, label))


@module.reducer(("owner", at.U64), ("label", at.STRING))
def remove(ctx: ReducerContext, owner: int, label: str) -> None:
    for row in ctx.db.item.filter(("owner", "label"), (owner, label)):
        ctx.db.item.delete(row)


@module.reducer(("text", at.STRING))
def shout(ctx: ReducerContext, text: str) -> None:
    ctx.db.ping.insert((text,))


class ViewModuleDouble(PythonModule):
    """Test double: `labels` (anonymous: each item's label, duplicates kept) and `mine` (a view of its caller: the
    labels of the items whose owner is the caller's identity). Answers are computed here, reading the datastore."""

    def __init__(self) -> None:
        super().__init__(module)
        typespace = (*self._definition.typespace, LABEL)
        returns = at.ArrayType(at.RefType(len(typespace) - 1))
        views = (
            md.ViewDef("labels", 0, True, True, at.product(), returns),
            md.ViewDef("mine", 0, True, False, at.product(), returns),
        )
        self._definition = dataclasses.replace(self._definition, typespace=typespace, views=views)
        self.calls: list[tuple[str, Identity | None]] = []
        self.failing = False

    def call_view(self, view: md.ViewDef, sender: Identity | None, datastore: Datastore) -> ViewAnswer:
        self.calls.append((view.name, sender))
        if self.failing:
            raise ViewCallError(f"view {view.name} failed: Error: down")
        rows = [row for row in datastore["item"].rows.values() if view.is_anonymous or sender == Identity(row[0])]
        return ViewAnswer(rows=tuple(LABEL_CODEC.encode((row[1],)) for row in rows), reads=frozenset({"item"}))


CALLER = Caller(Identity(7), ConnectionId(7))


class Harness:
    def __init__(self, engine: HostEngine, double: ViewModuleDouble) -> None:
        self.engine = engine
        self.double = double
        self.subs = SubscriptionManager(engine.datastore, lambda: engine.offset)
        self.updates: list[dict[Any, tuple[QuerySetUpdate, ...]]] = []
        engine.add_commit_listener(lambda tx: self.updates.append(self.subs.on_commit(tx)))

    async def call(self, reducer: str, *args: Any) -> dict[Any, tuple[QuerySetUpdate, ...]]:
        outcome = await self.engine.call_reducer(reducer, args, CALLER)
        assert outcome.tx is not None, outcome
        return self.updates[-1]

    def subscribe(self, client: str, query_set_id: int, sql: str, sender: int = 0) -> list[str]:
        applied = self.subs.subscribe(client, query_set_id, query_set_id, [sql], sender=Identity(sender))
        assert isinstance(applied, SubscribeApplied), applied
        (table,) = applied.rows.tables
        return [LABEL_CODEC.decode(row)[0] for row in table.rows]


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    double = ViewModuleDouble()
    engine = HostEngine(double, tmp_path, "viewed", EngineConfig(fsync=False))
    await engine.start()
    yield Harness(engine, double)
    await engine.stop()


def labels(update: QuerySetUpdate, table: str) -> tuple[list[str], list[str]]:
    (entry,) = next(t for t in update.tables if t.table_name == table).rows
    assert isinstance(entry, PersistentTableRows)
    return [LABEL_CODEC.decode(r)[0] for r in entry.inserts], [LABEL_CODEC.decode(r)[0] for r in entry.deletes]


async def test_a_view_update_is_the_multiset_difference_of_its_answers(harness: Harness) -> None:
    await harness.call("add", 1, "x")
    assert harness.subscribe("c1", 1, "SELECT * FROM labels") == ["x"]
    (update,) = (await harness.call("add", 2, "x"))["c1"]
    assert labels(update, "labels") == (["x"], []), "the same row twice: a second insert"
    (update,) = (await harness.call("remove", 1, "x"))["c1"]
    assert labels(update, "labels") == ([], ["x"]), "one of the two leaves"
    (update,) = (await harness.call("add", 3, "y"))["c1"]
    assert labels(update, "labels") == (["y"], [])


async def test_a_view_is_called_again_only_after_a_commit_touching_what_it_read_and_once_for_all(
    harness: Harness,
) -> None:
    harness.subscribe("c1", 1, "SELECT * FROM labels")
    harness.subscribe("c2", 2, "SELECT * FROM labels WHERE label = 'x'")
    harness.double.calls.clear()
    assert await harness.call("shout", "hello") == {}
    assert harness.double.calls == [], "a commit to a table the view never read does not call it"
    out = await harness.call("add", 1, "x")
    assert harness.double.calls == [("labels", None)], "one call for both query sets"
    assert labels(out["c1"][0], "labels") == (["x"], [])
    assert labels(out["c2"][0], "labels") == (["x"], [])
    out = await harness.call("add", 1, "z")
    assert labels(out["c1"][0], "labels") == (["z"], [])
    assert "c2" not in out, "the WHERE on the view's column keeps z out"


async def test_a_per_caller_view_answers_each_subscriber_its_own_rows(harness: Harness) -> None:
    await harness.call("add", 1, "one's")
    await harness.call("add", 2, "two's")
    assert harness.subscribe("c1", 1, "SELECT * FROM mine", sender=1) == ["one's"]
    assert harness.subscribe("c2", 1, "SELECT * FROM mine", sender=2) == ["two's"]
    out = await harness.call("add", 2, "two's second")
    assert "c1" not in out
    assert labels(out["c2"][0], "mine") == (["two's second"], [])
    unsubscribed = harness.subs.unsubscribe("c2", 9, 1, send_dropped_rows=True)
    assert unsubscribed.rows is not None
    (dropped,) = unsubscribed.rows.tables
    assert sorted(LABEL_CODEC.decode(r)[0] for r in dropped.rows) == ["two's", "two's second"]
    harness.double.calls.clear()
    await harness.call("add", 1, "one's second")
    assert harness.double.calls == [("mine", Identity(1))], "an unsubscribed view is not called any more"


async def test_a_view_failing_after_a_commit_keeps_its_rows_and_catches_up_at_the_next(harness: Harness) -> None:
    harness.subscribe("c1", 1, "SELECT * FROM labels")
    harness.double.failing = True
    assert await harness.call("add", 1, "missed") == {}
    harness.double.failing = False
    (update,) = (await harness.call("add", 1, "next"))["c1"]
    assert sorted(labels(update, "labels")[0]) == ["missed", "next"]


async def test_a_view_failing_at_subscribe_refuses_the_query_set_with_its_error(harness: Harness) -> None:
    harness.double.failing = True
    refused = harness.subs.subscribe("c1", 1, 1, ["SELECT * FROM labels"])
    assert not isinstance(refused, SubscribeApplied)
    assert refused.error == "view labels failed: Error: down"
    assert harness.subs.query_set_count("c1") == 0
