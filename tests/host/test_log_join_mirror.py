"""A join subscription over a log-shaped table (`host/logtable.py`) reads it as of each delivered offset, no copy kept.

The mirror of a log table grouped by its partition column reads the store's partition as it is now and undoes the
transactions applied after the mirror's offset (`JoinMirror`). These tests drive a real engine with transactions
applied ahead of their delivery (durability later), and check every update against the state of its own offset.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from autopilot_sync.bindings.context import ReducerContext
from autopilot_sync.bindings.module import Module
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.host.logtable import LogRows
from autopilot_sync.host.sql import SqlContext, compile_query, execute
from autopilot_sync.host.subscriptions import SubscriptionManager
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime.messages import PersistentTableRows, QuerySetUpdate, SubscribeApplied
from autopilot_sync.spacetime.values import ConnectionId, Identity

module = Module("logjoin")
event = module.table(
    "event",
    [("stream_id", at.STRING), ("seq", at.U64), ("body", at.STRING)],
    unique=[("stream_id", "seq")],
    indexes=[("stream_id",)],
)
reader = module.table(
    "reader", [("id", at.U64), ("stream_id", at.STRING), ("who", at.U32)], primary_key="id", indexes=[("stream_id",)]
)
EVENT = bsatn.codec(event.row_type)


@module.reducer(("stream_id", at.STRING), ("seq", at.U64), ("body", at.STRING))
def append(ctx: ReducerContext, stream_id: str, seq: int, body: str) -> None:
    ctx.db.event.insert((stream_id, seq, body))


@module.reducer(("stream_id", at.STRING), ("upto", at.U64))
def trim(ctx: ReducerContext, stream_id: str, upto: int) -> None:
    for row in list(ctx.db.event.filter("stream_id", stream_id)):
        if row[1] <= upto:
            ctx.db.event.delete(row)


@module.reducer(("id", at.U64), ("stream_id", at.STRING), ("who", at.U32))
def grant(ctx: ReducerContext, id: int, stream_id: str, who: int) -> None:
    ctx.db.reader.delete_by("id", id)
    ctx.db.reader.insert((id, stream_id, who))


@module.reducer(("id", at.U64))
def revoke(ctx: ReducerContext, id: int) -> None:
    ctx.db.reader.delete_by("id", id)


CALLER = Caller(Identity(7), ConnectionId(7))
RESUME = (
    "SELECT event.* FROM event JOIN reader ON event.stream_id = reader.stream_id "
    "WHERE event.stream_id = 's1' AND event.seq > 2 AND reader.who = 1"
)
ALL_GRANTED = "SELECT event.* FROM event JOIN reader ON event.stream_id = reader.stream_id WHERE reader.who = 1"


class Harness:
    """A real engine whose commit listener delivers to a subscription manager told of undelivered transactions."""

    def __init__(self, engine: HostEngine) -> None:
        self.engine = engine
        self.subs = SubscriptionManager(
            engine.datastore, lambda: engine.offset, lambda: engine.durable_offset, None, engine.undelivered_after
        )
        #: (offset, updates, the expected view of each client at that offset)
        self.updates: list[tuple[int, dict[Any, tuple[QuerySetUpdate, ...]]]] = []
        engine.add_commit_listener(lambda tx: self.updates.append((tx.offset, self.subs.on_commit(tx))))

    def run(self, reducer: str, *args: Any) -> int | None:
        """Apply a transaction now; it is delivered once durable (later)."""
        outcome, sequence = self.engine.run_transaction(reducer, args, CALLER)
        assert outcome.tx is not None, outcome
        return sequence

    async def settle(self, sequence: int | None) -> None:
        if sequence is not None:
            await self.engine.commitlog.wait_durable(sequence)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    engine = HostEngine(module, tmp_path, "logjoin", EngineConfig(fsync=False))
    await engine.start()
    assert isinstance(engine.datastore["event"].rows, LogRows)
    yield Harness(engine)
    await engine.stop()


def _apply(view: set[bytes], updates: tuple[QuerySetUpdate, ...]) -> None:
    for update in updates:
        for table in update.tables:
            for entry in table.rows:
                assert isinstance(entry, PersistentTableRows)
                deletes, inserts = {bytes(r) for r in entry.deletes}, {bytes(r) for r in entry.inserts}
                assert deletes <= view, "a delete of a row the client does not hold"
                view -= deletes
                assert not inserts & view, "an insert of a row the client holds"
                view |= inserts


def _events(rows: set[bytes]) -> list[tuple[Any, ...]]:
    return sorted(tuple(EVENT.decode(r)) for r in rows)


async def test_a_grant_applied_before_later_commits_are_durable_sees_exactly_the_rows_of_its_own_offset(
    harness: Harness,
) -> None:
    for seq in range(1, 6):
        harness.run("append", "s1", seq, f"e{seq}")
    await harness.settle(harness.run("append", "s2", 1, "other"))
    applied = harness.subs.subscribe("c", 1, 1, [RESUME])
    assert isinstance(applied, SubscribeApplied)
    view = {bytes(r) for t in applied.rows.tables for r in t.rows}
    assert view == set()  # no grant yet
    before = len(harness.updates)
    # the grant, then (applied, not yet durable) an append and a trim of the granted stream
    harness.run("grant", 1, "s1", 1)
    harness.run("append", "s1", 6, "e6")
    await harness.settle(harness.run("trim", "s1", 3))
    (grant_offset, at_grant), (_, at_append), (_, at_trim) = harness.updates[before:]
    _apply(view, at_grant.get("c", ()))
    assert [row[1] for row in _events(view)] == [3, 4, 5]  # as of the grant: e6 not yet there, e3 not yet trimmed
    _apply(view, at_append.get("c", ()))
    assert [row[1] for row in _events(view)] == [3, 4, 5, 6]
    _apply(view, at_trim.get("c", ()))
    assert [row[1] for row in _events(view)] == [4, 5, 6]
    assert grant_offset == harness.updates[before][0]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_appends_trims_and_grants_applied_ahead_of_delivery_keep_the_client_view_exact(
    harness: Harness, seed: int
) -> None:
    """Random batches of transactions applied before any is delivered; after delivery each client's view is exactly
    what the query answers on the datastore (which then holds the same offset)."""
    rng = random.Random(seed)
    queries = {"c": [RESUME], "d": [ALL_GRANTED], "e": [RESUME, "SELECT * FROM event WHERE stream_id = 's2'"]}
    next_seq = {"s1": 1, "s2": 1, "s3": 1}
    views: dict[str, set[bytes]] = {}
    ctx = SqlContext(harness.engine.datastore)
    for step in range(60):
        if step == 5:
            for client, sqls in queries.items():
                applied = harness.subs.subscribe(client, 1, 1, sqls)
                assert isinstance(applied, SubscribeApplied)
                views[client] = {bytes(r) for t in applied.rows.tables for r in t.rows}
        before = len(harness.updates)
        sequence = None
        for _ in range(rng.randrange(1, 6)):
            stream = rng.choice(list(next_seq))
            kind = rng.randrange(6)
            if kind <= 2:
                found = harness.run("append", stream, next_seq[stream], rng.choice("xy"))
                next_seq[stream] += 1
            elif kind == 3:
                found = harness.run("trim", stream, rng.randrange(next_seq[stream]))
            elif kind == 4:
                found = harness.run("grant", rng.randrange(4), stream, rng.randrange(1, 3))
            else:
                found = harness.run("revoke", rng.randrange(4))
            sequence = found if found is not None else sequence
        await harness.settle(sequence)
        for _, out in harness.updates[before:]:
            for client, view in views.items():
                _apply(view, out.get(client, ()))
        for client, view in views.items():
            expected: set[bytes] = set()
            for sql in queries[client]:
                result = execute(compile_query(sql, ctx), harness.engine.datastore)
                assert result.row_bytes is not None
                expected |= set(result.row_bytes)
            assert _events(view) == _events(expected), (client, step)
