"""Subscribed views in the subscription engine, without sockets or Node: multiset differences, the read-set skip,
one call per (view, caller) per commit, per-caller rows, a view that fails after a commit, differences computed at
apply and sent at durable delivery (group commit held back by the tests), procedures, and a module replaced.

`ViewModuleDouble` is a unit-test double: a Python module with views whose answers are computed here in Python (NOT
the runner; the real thing, a TypeScript module's views in a Node runner, is proven end to end in
`tests/tsbuild/test_views_on_host.py`). It counts its calls, so the tests can see when the engine calls a view.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from autopilot_sync.bindings.context import ReducerContext
from autopilot_sync.bindings.module import Module
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.datastore import Datastore
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.host.hosted_module import PythonModule
from autopilot_sync.host.procedure_call import ProcedureStatus
from autopilot_sync.host.subscriptions import SubscriptionManager
from autopilot_sync.host.transaction import CommittedTx
from autopilot_sync.host.view_call import ViewAnswer, ViewCallError
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime import moduledef as md
from autopilot_sync.spacetime.messages import PersistentTableRows, QuerySetUpdate, SubscribeApplied, SubscriptionError
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

    def __init__(self, *, upper: bool = False, names: tuple[str, ...] = ("labels", "mine")) -> None:
        """`upper`: a republished module whose views answer upper-cased labels; `names`: the views it serves."""
        super().__init__(module)
        typespace = (*self._definition.typespace, LABEL)
        returns = at.ArrayType(at.RefType(len(typespace) - 1))
        views = (
            md.ViewDef("labels", 0, True, True, at.product(), returns),
            md.ViewDef("mine", 1, True, False, at.product(), returns),
        )
        views = tuple(view for view in views if view.name in names)
        procedures = (md.ProcedureDef("add_two", at.product(), at.product()),)
        self._definition = dataclasses.replace(
            self._definition, typespace=typespace, views=views, procedures=procedures
        )
        self.calls: list[tuple[str, Identity | None]] = []
        self.failing = False
        self.upper = upper
        self.in_procedure = False

    def call_procedure(self, procedure: str, args: bytes, caller: Caller, timestamp: Any, txs: Any) -> bytes:
        """`add_two`: two transactions (items 'p1', 'p2'), as `ctx.withTx` twice; a view call meanwhile fails, as
        the runner's does (it is inside the procedure)."""
        self.in_procedure = True
        try:
            for label in ("p1", "p2"):
                ctx = txs.begin()
                ctx.db.item.insert((1, label))
                txs.commit(ctx)
        finally:
            self.in_procedure = False
        return b""

    def call_view(self, view: md.ViewDef, sender: Identity | None, datastore: Datastore) -> ViewAnswer:
        self.calls.append((view.name, sender))
        if self.in_procedure:
            raise ViewCallError(f"view {view.name} called while another module call is running")
        if self.failing:
            raise ViewCallError(f"view {view.name} failed: Error: down")
        rows = [row for row in datastore["item"].rows.values() if view.is_anonymous or sender == Identity(row[0])]
        texts = [row[1].upper() if self.upper else row[1] for row in rows]
        return ViewAnswer(rows=tuple(LABEL_CODEC.encode((text,)) for text in texts), reads=frozenset({"item"}))


CALLER = Caller(Identity(7), ConnectionId(7))


class Harness:
    def __init__(self, engine: HostEngine, double: ViewModuleDouble) -> None:
        self.engine = engine
        self.double = double
        #: the newest offset handed to the subscription engine (`release`)
        self.delivered = 0
        self.subs = SubscriptionManager(engine.datastore, lambda: engine.offset, lambda: self.delivered)
        self.updates: list[dict[Any, tuple[QuerySetUpdate, ...]]] = []
        #: what a durable commit is handed to (tests replace it to hold deliveries back, as group commit does)
        self.deliver: Callable[[CommittedTx], None] = lambda tx: self.updates.append(self.release(tx))
        engine.add_apply_listener(self.subs.on_apply)
        self.ended: list[tuple[Any, SubscriptionError]] = []
        engine.add_module_replaced_listener(lambda: self.ended.extend(self.subs.on_module_replaced()))
        engine.add_commit_listener(lambda tx: self.deliver(tx))

    def release(self, tx: CommittedTx) -> dict[Any, tuple[QuerySetUpdate, ...]]:
        """Hand one durable commit to the subscription engine (what the WebSocket hub's commit listener does)."""
        self.delivered = tx.offset
        return self.subs.on_commit(tx)

    async def call(self, reducer: str, *args: Any) -> dict[Any, tuple[QuerySetUpdate, ...]]:
        await self.call_held(reducer, *args)
        return self.updates[-1]

    async def call_held(self, reducer: str, *args: Any) -> None:
        outcome = await self.engine.call_reducer(reducer, args, CALLER)
        assert outcome.tx is not None, outcome

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


async def test_a_view_update_reveals_no_commit_that_is_not_durable_yet(harness: Harness) -> None:
    """Group commit applies N+1 before N is durable: N's update must hold N's effect on the view, not N+1's."""
    harness.subscribe("c1", 1, "SELECT * FROM labels")
    held: list[Any] = []
    harness.deliver = held.append  # hold deliveries back: the subscription engine hears of nothing yet
    await harness.call_held("add", 1, "n")
    await harness.call_held("add", 1, "n plus one")
    first, second = held
    (update,) = harness.release(first)["c1"]
    assert labels(update, "labels") == (["n"], []), "only commit N's row goes out with N"
    (update,) = harness.release(second)["c1"]
    assert labels(update, "labels") == (["n plus one"], []), "N+1's row goes out with N+1"


async def test_a_query_set_subscribed_after_a_commit_applied_does_not_get_that_commits_view_difference(
    harness: Harness,
) -> None:
    harness.subscribe("c1", 1, "SELECT * FROM labels")
    held: list[Any] = []
    harness.deliver = held.append
    await harness.call_held("add", 1, "before c2")
    assert harness.subscribe("c2", 1, "SELECT * FROM labels") == ["before c2"], "c2's initial rows hold the commit"
    await harness.call_held("add", 1, "after c2")
    first, second = held
    out = harness.release(first)
    assert labels(out["c1"][0], "labels") == (["before c2"], [])
    assert "c2" not in out, "its initial rows already hold this commit"
    out = harness.release(second)
    assert labels(out["c1"][0], "labels") == (["after c2"], [])
    assert labels(out["c2"][0], "labels") == (["after c2"], [])


async def test_a_module_replaced_without_a_schema_change_serves_live_view_subscriptions_its_own_views(
    harness: Harness,
) -> None:
    await harness.call("add", 1, "x")
    assert harness.subscribe("c1", 1, "SELECT * FROM labels") == ["x"]
    replacement = ViewModuleDouble(upper=True)
    harness.engine.install(replacement, clear=False, schema_changed=False)
    assert harness.ended == []
    (update,) = (await harness.call("shout", "a commit the old view's read set does not cover"))["c1"]
    assert labels(update, "labels") == (["X"], ["x"]), "the new module's view answers at the next commit"
    assert replacement.calls == [("labels", None)]
    (update,) = (await harness.call("add", 2, "y"))["c1"]
    assert labels(update, "labels") == (["Y"], [])


async def test_a_module_replaced_without_the_view_ends_its_query_sets_with_a_typed_error(harness: Harness) -> None:
    harness.subscribe("c1", 1, "SELECT * FROM labels")
    harness.subscribe("c2", 2, "SELECT * FROM mine", sender=1)
    replacement = ViewModuleDouble(names=("mine",))
    harness.engine.install(replacement, clear=False, schema_changed=False)
    ((client, error),) = harness.ended
    assert client == "c1"
    assert (error.request_id, error.query_set_id) == (None, 1)
    assert error.error == "view labels is not served alike by the module just published; subscribe again"
    assert harness.subs.query_set_count("c1") == 0
    out = await harness.call("add", 1, "x")
    assert "c1" not in out
    assert labels(out["c2"][0], "mine") == (["x"], [])
    assert replacement.calls == [("mine", Identity(1))], "the view the module no longer serves is never called"


async def test_a_procedures_commits_reach_its_views_once_it_returned_and_with_its_last_commit(
    harness: Harness,
) -> None:
    harness.subscribe("c1", 1, "SELECT * FROM labels")
    held: list[Any] = []
    harness.deliver = held.append
    harness.double.calls.clear()
    outcome = await harness.engine.call_procedure("add_two", b"", CALLER)
    assert outcome.status is ProcedureStatus.RETURNED, outcome
    assert harness.double.calls == [("labels", None)], "called once, after the procedure returned"
    first, second = held
    assert "c1" not in harness.release(first), "the view is not called inside the procedure"
    (update,) = harness.release(second)["c1"]
    assert sorted(labels(update, "labels")[0]) == ["p1", "p2"]


async def test_an_unsubscribed_view_query_set_gets_the_updates_its_dropped_rows_hold_and_no_later_one(
    harness: Harness,
) -> None:
    harness.subscribe("c1", 1, "SELECT * FROM labels")
    held: list[Any] = []
    harness.deliver = held.append
    await harness.call_held("add", 1, "n")
    unsubscribed = harness.subs.unsubscribe("c1", 9, 1, send_dropped_rows=True)
    assert unsubscribed.rows is not None
    (dropped,) = unsubscribed.rows.tables
    assert [LABEL_CODEC.decode(r)[0] for r in dropped.rows] == ["n"], "dropped at the current state"
    await harness.call_held("add", 1, "after")
    first, second = held
    (update,) = harness.release(first)["c1"]
    assert labels(update, "labels") == (["n"], []), "the commit its dropped rows hold still reaches it"
    assert "c1" not in harness.release(second)


async def test_two_commits_applied_before_either_is_durable_each_carry_only_their_own_view_rows(
    harness: Harness,
) -> None:
    """No test hand on delivery: two calls apply at once (as two WebSocket messages do), the log's flusher makes them
    durable and the engine delivers them; each update shows its own commit's view rows."""
    harness.subscribe("c1", 1, "SELECT * FROM labels")
    outcomes: list[Any] = []
    harness.engine.start_call("add", [1, "first"], CALLER, None, outcomes.append)
    harness.engine.start_call("add", [1, "second"], CALLER, None, outcomes.append)
    assert harness.engine.durable_offset < harness.engine.offset, "both applied, neither durable yet"
    await harness.engine.wait_durable_offset(harness.engine.offset)
    first, second = harness.updates[-2:]
    assert labels(first["c1"][0], "labels") == (["first"], [])
    assert labels(second["c1"][0], "labels") == (["second"], [])


async def test_a_view_query_past_the_per_connection_limit_is_refused_with_a_text_that_names_views(
    harness: Harness,
) -> None:
    """A query over a view is checked on every commit that touches what the view read, so it counts toward
    `max_unindexed_queries_per_connection`; the refusal must say so rather than ask for an indexable WHERE term,
    which a view query cannot have."""
    harness.subs.limits = dataclasses.replace(harness.subs.limits, max_unindexed_queries_per_connection=1)
    assert harness.subscribe("c1", 1, "SELECT * FROM labels") == []
    refused = harness.subs.subscribe("c1", 2, 2, ["SELECT * FROM labels"], sender=Identity(0))
    assert isinstance(refused, SubscriptionError)
    assert refused.error == (
        "too many queries over views or without an indexable term on this connection: 2 > 1; a query over a view "
        "is checked on every commit touching what the view read: subscribe to fewer views"
    )
