"""The sync module's row-level security, evaluated by the real engine and subscription engine (no sockets).

Each test states one visibility promise; `tests/module/test_read_authorization.py` and
`tests/security/test_read_access.py` prove the same rules over real processes.
"""

from __future__ import annotations

from typing import Any

import pytest
from sync_module_helpers import ADMIN, PUBLISHER, READER, caller, event

from autopilot_sync.host.call_outcome import CallStatus
from autopilot_sync.host.engine import HostEngine
from autopilot_sync.host.sql import SqlContext, SqlError, check_visibility_filters, compile_query, execute
from autopilot_sync.host.subscriptions import SubscriptionManager
from autopilot_sync.host.transaction import CommittedTx
from autopilot_sync.module import module
from autopilot_sync.spacetime.messages import PersistentTableRows, QuerySetUpdate, SubscribeApplied
from autopilot_sync.spacetime.values import Identity

OTHER = caller(["sync.subscribe", "sync.checkpoint.write"], sub="b" * 64, ident=3, conn=3)
ANONYMOUS = Identity(0xDEAD)


async def ok(engine: HostEngine, reducer: str, *args: Any, who: Any = PUBLISHER) -> None:
    outcome = await engine.call_reducer(reducer, args, who)
    assert outcome.status is CallStatus.COMMITTED, outcome.message


def read(engine: HostEngine, sql: str, sender: Identity | None, *, owner: bool = False) -> list[tuple[Any, ...]]:
    plan = compile_query(sql, SqlContext(engine.datastore, private_visible=owner, sender=sender))
    return list(execute(plan, engine.datastore).rows)


class Watcher:
    """A subscription manager fed by the engine's durable commits, recording each client's updates."""

    def __init__(self, engine: HostEngine) -> None:
        self.manager = SubscriptionManager(engine.datastore, lambda: engine.offset)
        self.updates: list[dict[Any, tuple[QuerySetUpdate, ...]]] = []
        engine.add_commit_listener(self._on_commit)

    def _on_commit(self, tx: CommittedTx) -> None:
        self.updates.append(self.manager.on_commit(tx))

    def rows_for(self, client: Any, table: str) -> tuple[int, int]:
        """(inserted, deleted) row counts `client` was sent for `table` so far."""
        inserted = deleted = 0
        for update in self.updates:
            for query_set in update.get(client, ()):
                for table_update in query_set.tables:
                    if table_update.table_name != table:
                        continue
                    for rows in table_update.rows:
                        assert isinstance(rows, PersistentTableRows)
                        inserted += len(rows.inserts)
                        deleted += len(rows.deletes)
        return inserted, deleted


async def publish_two_streams(engine: HostEngine) -> None:
    await ok(engine, "append_sync_events", [event("mine", 1, {"n": 1}), event("mine", 2, {"n": 2})])
    await ok(engine, "append_sync_events", [event("theirs", 1, {"n": 1})])
    await ok(engine, "grant_stream_readers", "mine", [READER.identity])
    await ok(engine, "grant_stream_readers", "theirs", [OTHER.identity])


def test_every_filter_of_the_sync_module_compiles(engine: HostEngine) -> None:
    check_visibility_filters(engine.datastore)
    declared = {sql for sqls in module.visibility_filters.values() for sql in sqls}
    assert {f["sql"] for f in module.schema_json()["row_level_security"]} == declared


async def test_a_reader_sees_events_and_heads_of_its_streams_only(engine: HostEngine) -> None:
    await publish_two_streams(engine)
    reader = READER.identity
    assert sorted(r[0] for r in read(engine, "SELECT * FROM sync_event", reader)) == ["mine", "mine"]
    assert read(engine, "SELECT * FROM sync_event WHERE stream_id = 'theirs'", reader) == []
    assert [r[0] for r in read(engine, "SELECT * FROM stream_head", reader)] == ["mine"]
    assert read(engine, "SELECT COUNT(*) AS n FROM sync_event", reader) == [(2,)]
    assert read(engine, "SELECT seq FROM sync_event WHERE seq > 1", reader) == [(2,)]
    assert [r[0] for r in read(engine, "SELECT * FROM stream_reader", reader)] == ["mine"]
    # the database owner is not subject to row-level security, as on SpacetimeDB
    assert len(read(engine, "SELECT * FROM sync_event", None, owner=True)) == 3


async def test_a_caller_in_no_table_sees_no_private_row(engine: HostEngine) -> None:
    await publish_two_streams(engine)
    await engine.connect(READER)
    await ok(engine, "ack_checkpoint", "mine", 1, who=READER)
    private = ("sync_event", "stream_head", "stream_checkpoint", "active_connection", "stream_reader", "sync_member")
    for table in private:
        assert read(engine, f"SELECT * FROM {table}", ANONYMOUS) == [], table


async def test_checkpoints_are_visible_to_their_owner_only(engine: HostEngine) -> None:
    await publish_two_streams(engine)
    await ok(engine, "ack_checkpoint", "mine", 2, who=READER)
    await ok(engine, "ack_checkpoint", "theirs", 1, who=OTHER)
    assert [r[2] for r in read(engine, "SELECT * FROM stream_checkpoint", READER.identity)] == ["mine"]
    assert [r[2] for r in read(engine, "SELECT * FROM stream_checkpoint", OTHER.identity)] == ["theirs"]


async def test_presence_shows_to_admitted_subscribers_only(engine: HostEngine) -> None:
    publisher_only = caller(["sync.append"], ident=5, conn=5)
    await engine.connect(READER)
    await engine.connect(publisher_only)
    assert len(read(engine, "SELECT * FROM active_connection", READER.identity)) == 2
    assert read(engine, "SELECT * FROM active_connection", publisher_only.identity) == []
    assert read(engine, "SELECT * FROM active_connection", ANONYMOUS) == []
    assert [r[0] for r in read(engine, "SELECT * FROM sync_member", READER.identity)] == [READER.identity]


async def test_subscription_deltas_follow_grants_appends_and_revocations(engine: HostEngine) -> None:
    watcher = Watcher(engine)
    await ok(engine, "append_sync_events", [event("s", 1, {"n": 1})])
    applied = watcher.manager.subscribe(
        "reader", 1, 1, ["SELECT * FROM sync_event WHERE stream_id = 's' AND seq > 0"], sender=READER.identity
    )
    assert isinstance(applied, SubscribeApplied)
    assert sum(len(t.rows) for t in applied.rows.tables) == 0  # not a reader yet
    other = watcher.manager.subscribe("other", 1, 1, ["SELECT * FROM sync_event"], sender=OTHER.identity)
    assert isinstance(other, SubscribeApplied)

    await ok(engine, "grant_stream_readers", "s", [READER.identity])
    assert watcher.rows_for("reader", "sync_event") == (1, 0)  # the granted stream's history arrives as a delta
    await ok(engine, "append_sync_events", [event("s", 2, {"n": 2})])
    assert watcher.rows_for("reader", "sync_event") == (2, 0)
    await ok(engine, "revoke_stream_reader", "s", READER.identity, who=ADMIN)
    assert watcher.rows_for("reader", "sync_event") == (2, 2)
    await ok(engine, "append_sync_events", [event("s", 3, {"n": 3})])
    assert watcher.rows_for("reader", "sync_event") == (2, 2)
    assert watcher.rows_for("other", "sync_event") == (0, 0)


async def test_only_producers_of_a_stream_grant_readers(engine: HostEngine) -> None:
    outcome = await engine.call_reducer("grant_stream_readers", ("s", [READER.identity]), READER)
    assert outcome.status is CallStatus.USER_ERROR and outcome.message.startswith("unauthorized")
    limited = caller(["sync.append"], ident=6, conn=6, streams=["a*"])
    outcome = await engine.call_reducer("grant_stream_readers", ("b", [READER.identity]), limited)
    assert outcome.status is CallStatus.USER_ERROR and outcome.message.startswith("forbidden_stream")
    outcome = await engine.call_reducer("grant_stream_readers", ("a", [READER.identity] * 300), limited)
    assert outcome.status is CallStatus.USER_ERROR and outcome.message.startswith("invalid_event")
    outcome = await engine.call_reducer("revoke_stream_reader", ("a", READER.identity), limited)
    assert outcome.status is CallStatus.USER_ERROR and outcome.message.startswith("unauthorized")


async def test_a_join_query_over_a_join_filtered_table_is_refused_with_the_reason(engine: HostEngine) -> None:
    with pytest.raises(SqlError, match="visible through a join"):
        read(
            engine,
            "SELECT sync_event.* FROM sync_event JOIN stream_head ON sync_event.stream_id = stream_head.stream_id",
            READER.identity,
        )


async def test_an_append_reaches_the_resume_subscriptions_of_its_own_stream_only(engine: HostEngine) -> None:
    watcher = Watcher(engine)
    for stream in ("a", "b"):
        await ok(engine, "grant_stream_readers", stream, [READER.identity])
        resume = f"SELECT * FROM sync_event WHERE stream_id = '{stream}' AND seq > 0"
        applied = watcher.manager.subscribe(stream, 1, 1, [resume], sender=READER.identity)
        assert isinstance(applied, SubscribeApplied)
    await ok(engine, "append_sync_events", [event("a", 1, {"n": 1}), event("a", 2, {"n": 2})])
    assert watcher.rows_for("a", "sync_event") == (2, 0)
    assert watcher.rows_for("b", "sync_event") == (0, 0)
    await ok(engine, "append_sync_events", [event("b", 1, {"n": 1})])
    assert watcher.rows_for("a", "sync_event") == (2, 0)
    assert watcher.rows_for("b", "sync_event") == (1, 0)
