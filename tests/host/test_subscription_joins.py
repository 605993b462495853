"""Join subscriptions (`SELECT t.* FROM t JOIN u ON t.a = u.b`): the plan, the index rule, initial rows and deltas."""

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
from autopilot_sync.host.sql import (
    SqlContext,
    SqlError,
    compile_query,
    compile_subscription,
    execute,
    joins,
    sql_json_result,
)
from autopilot_sync.host.subscriptions import SubscriptionManager
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime.messages import PersistentTableRows, QuerySetUpdate, SubscribeApplied, SubscriptionError
from autopilot_sync.spacetime.values import ConnectionId, Identity

module = Module("teams")
item = module.table(
    "item", [("id", at.U64), ("owner", at.U32), ("name", at.STRING)], primary_key="id", indexes=[("owner",)]
)
member = module.table(
    "member",
    [("id", at.U64), ("user", at.U32), ("active", at.BOOL), ("tag", at.STRING)],
    primary_key="id",
    indexes=[("user",)],
)
ITEM = bsatn.codec(item.row_type)


@module.reducer(("id", at.U64), ("owner", at.U32), ("name", at.STRING))
def put_item(ctx: ReducerContext, id: int, owner: int, name: str) -> None:
    ctx.db.item.delete_by("id", id)
    ctx.db.item.insert((id, owner, name))


@module.reducer(("id", at.U64))
def del_item(ctx: ReducerContext, id: int) -> None:
    ctx.db.item.delete_by("id", id)


@module.reducer(("id", at.U64), ("user", at.U32), ("active", at.BOOL))
def put_member(ctx: ReducerContext, id: int, user: int, active: bool) -> None:
    ctx.db.member.delete_by("id", id)
    ctx.db.member.insert((id, user, active, ""))


@module.reducer(("id", at.U64))
def del_member(ctx: ReducerContext, id: int) -> None:
    ctx.db.member.delete_by("id", id)


@module.reducer(("user", at.U32), ("owner", at.U32))
def move_all(ctx: ReducerContext, user: int, owner: int) -> None:
    """In one transaction: a new member for `user`, and every item of `owner` handed to `user`."""
    ctx.db.member.insert((1000 + user, user, True, ""))
    for row in list(ctx.db.item.filter("owner", owner)):
        ctx.db.item.delete(row)
        ctx.db.item.insert((row[0], user, row[2]))


CALLER = Caller(Identity(7), ConnectionId(7))
JOIN = "SELECT item.* FROM item JOIN member ON item.owner = member.user"
ACTIVE = JOIN + " WHERE member.active = true"


class Harness:
    def __init__(self, engine: HostEngine) -> None:
        self.engine = engine
        self.subs = SubscriptionManager(engine.datastore, lambda: engine.offset)
        self.updates: list[dict[Any, tuple[QuerySetUpdate, ...]]] = []
        engine.add_commit_listener(lambda tx: self.updates.append(self.subs.on_commit(tx)))

    async def call(self, reducer: str, *args: Any) -> dict[Any, tuple[QuerySetUpdate, ...]]:
        before = len(self.updates)
        outcome = await self.engine.call_reducer(reducer, args, CALLER)
        assert outcome.tx is not None, outcome
        return self.updates[-1] if len(self.updates) > before else {}


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    engine = HostEngine(module, tmp_path, "teams", EngineConfig(fsync=False))
    await engine.start()
    yield Harness(engine)
    await engine.stop()


def items(rows: Any) -> list[tuple[Any, ...]]:
    return sorted(tuple(ITEM.decode(r)) for r in rows)


def delta(out: dict[Any, tuple[QuerySetUpdate, ...]], client: str = "c") -> tuple[list[Any], list[Any]]:
    if client not in out:
        return [], []
    (update,) = out[client]
    (table,) = update.tables
    assert table.table_name == "item"
    (entry,) = table.rows
    assert isinstance(entry, PersistentTableRows)
    return items(entry.inserts), items(entry.deletes)


def initial(applied: SubscribeApplied | SubscriptionError) -> list[tuple[Any, ...]]:
    assert isinstance(applied, SubscribeApplied), applied
    return [row for t in applied.rows.tables for row in items(t.rows)]


# ----- the plan -----


async def test_join_plan_projects_one_table_and_offsets_the_other(harness: Harness) -> None:
    ctx = SqlContext(harness.engine.datastore)
    plan = compile_subscription(ACTIVE + " AND item.name = 'x'", ctx)
    assert plan.table.name == "item" and plan.join is not None
    assert (plan.join.table.name, plan.join.left_column, plan.join.right_column) == ("member", "owner", "user")
    positions = sorted(t.position for t in plan.predicate.parts)  # type: ignore[union-attr]
    assert positions == [2, 3 + 2]  # item.name, then member.active after item's three columns
    swapped = compile_subscription("SELECT m.* FROM item AS i JOIN member AS m ON m.user = i.owner", ctx)
    assert swapped.table.name == "member" and swapped.join is not None and swapped.join.table.name == "item"
    assert (swapped.join.left_column, swapped.join.right_column) == ("user", "owner")


async def test_join_refusals_use_the_real_hosts_words(harness: Harness) -> None:
    ctx = SqlContext(harness.engine.datastore)
    for bad, fragment in (
        ("SELECT item.* FROM item JOIN member ON item.name = member.tag", "Subscriptions require indexes on join"),
        # only member is filtered: the planner swaps sides and probes item.name, which has no index
        (
            "SELECT item.* FROM item JOIN member ON item.name = member.tag WHERE member.active = true",
            "Subscriptions require indexes on join",
        ),
        ("SELECT * FROM item JOIN member ON item.owner = member.user", "SELECT \\* is not supported for joins"),
        ("SELECT item.* FROM item LEFT JOIN member ON item.owner = member.user", "Non-inner joins"),
        ("SELECT item.* FROM item JOIN member ON owner = member.user", "Names must be qualified"),
        ("SELECT item.* FROM item JOIN member ON item.owner = member.user WHERE active = true", "qualified"),
        ("SELECT item.* FROM item JOIN member ON item.owner = member.nope", "does not have a field `nope`"),
        ("SELECT item.* FROM item JOIN member ON item.owner = member.tag", "Unexpected type"),
        ("SELECT x.* FROM item JOIN member ON item.owner = member.user", "`x` is not in scope"),
        ("SELECT item.name FROM item JOIN member ON item.owner = member.user", "Column projections"),
        (JOIN + " JOIN item AS j ON j.id = member.id", "Invalid number of tables"),
        ("SELECT a.* FROM item AS a JOIN item AS b ON a.id = b.owner", "self-joins"),
    ):
        with pytest.raises(SqlError, match=fragment):
            compile_subscription(bad, ctx)
    # the lookup side is member.user (indexed) unless only member is filtered; then item.owner (indexed too)
    assert compile_subscription(JOIN, ctx) and compile_subscription(ACTIVE, ctx)
    # one-off queries have no index rule (the real host hash-joins them)
    assert compile_query("SELECT item.* FROM item JOIN member ON item.name = member.tag", ctx).join is not None


# ----- initial rows and one-off queries -----


async def test_initial_rows_once_per_row_one_off_once_per_pair(harness: Harness) -> None:
    await harness.call("put_item", 1, 10, "a")
    await harness.call("put_item", 2, 20, "b")
    await harness.call("put_item", 3, 30, "c")
    await harness.call("put_member", 1, 10, True)
    await harness.call("put_member", 2, 10, True)  # item 1 has two partners
    await harness.call("put_member", 3, 20, False)
    assert initial(harness.subs.subscribe("c", 1, 1, [JOIN])) == [(1, 10, "a"), (2, 20, "b")]
    assert initial(harness.subs.subscribe("d", 2, 1, [ACTIVE])) == [(1, 10, "a")]
    ctx = SqlContext(harness.engine.datastore)
    result = execute(compile_query(JOIN, ctx), harness.engine.datastore)
    assert sorted(result.rows) == [(1, 10, "a"), (1, 10, "a"), (2, 20, "b")]  # bag, as SQL (and the real host)
    (http,) = sql_json_result(harness.engine.datastore, ACTIVE + " AND item.id >= 1")
    assert http["rows"] == [[1, 10, "a"], [1, 10, "a"]]
    assert [e["name"] for e in http["schema"]["elements"]] == [{"some": "id"}, {"some": "owner"}, {"some": "name"}]


# ----- deltas -----


async def test_deltas_from_either_side(harness: Harness) -> None:
    await harness.call("put_item", 1, 10, "a")
    assert initial(harness.subs.subscribe("c", 1, 1, [ACTIVE])) == []
    assert delta(await harness.call("put_member", 1, 10, True)) == ([(1, 10, "a")], [])  # partner arrives
    assert delta(await harness.call("put_member", 2, 10, True)) == ([], [])  # a second partner: nothing
    assert delta(await harness.call("put_item", 2, 10, "b")) == ([(2, 10, "b")], [])  # new row with partners
    assert delta(await harness.call("put_member", 1, 10, False)) == ([], [])  # one partner leaves, one stays
    assert delta(await harness.call("del_member", 2)) == ([], [(1, 10, "a"), (2, 10, "b")])  # the last one
    assert delta(await harness.call("put_member", 1, 10, True)) == ([(1, 10, "a"), (2, 10, "b")], [])
    assert delta(await harness.call("put_item", 1, 10, "a2")) == ([(1, 10, "a2")], [(1, 10, "a")])  # update
    assert delta(await harness.call("put_item", 1, 99, "a2")) == ([], [(1, 10, "a2")])  # moved out
    assert delta(await harness.call("put_item", 1, 10, "a3")) == ([(1, 10, "a3")], [])  # moved back in
    assert delta(await harness.call("del_item", 2)) == ([], [(2, 10, "b")])
    assert delta(await harness.call("put_item", 5, 77, "z")) == ([], [])  # no partner: nothing


async def test_one_transaction_changing_both_sides(harness: Harness) -> None:
    await harness.call("put_item", 1, 10, "a")
    await harness.call("put_item", 2, 10, "b")
    await harness.call("put_member", 1, 10, True)
    assert initial(harness.subs.subscribe("c", 1, 1, [ACTIVE])) == [(1, 10, "a"), (2, 10, "b")]
    # items of owner 10 move to user 5, who becomes a member in the same transaction
    assert delta(await harness.call("move_all", 5, 10)) == ([(1, 5, "a"), (2, 5, "b")], [(1, 10, "a"), (2, 10, "b")])


async def test_a_row_held_by_another_query_of_the_set_stays(harness: Harness) -> None:
    await harness.call("put_item", 1, 10, "a")
    await harness.call("put_member", 1, 10, True)
    both = [ACTIVE, "SELECT * FROM item WHERE name = 'a'"]
    assert initial(harness.subs.subscribe("c", 1, 1, both)) == [(1, 10, "a")]
    assert delta(await harness.call("del_member", 1)) == ([], [])  # the plain query still holds it
    assert delta(await harness.call("put_member", 1, 10, True)) == ([], [])
    assert delta(await harness.call("put_item", 1, 10, "b")) == ([(1, 10, "b")], [(1, 10, "a")])
    assert delta(await harness.call("del_member", 1)) == ([], [(1, 10, "b")])


async def test_transactions_delivered_after_later_ones_ran(harness: Harness) -> None:
    """Subscribers hear of a transaction once it is durable: the join must read the tables as of that transaction."""
    engine = harness.engine
    await harness.call("put_item", 1, 10, "a")
    assert initial(harness.subs.subscribe("c", 1, 1, [JOIN])) == []
    before = len(harness.updates)
    engine.run_transaction("put_member", (1, 10, True), CALLER)
    _, sequence = engine.run_transaction("del_item", (1,), CALLER)
    assert sequence is not None
    await engine.commitlog.wait_durable(sequence)
    first, second = harness.updates[before:]
    assert delta(first) == ([(1, 10, "a")], [])  # at its own offset item 1 still existed
    assert delta(second) == ([], [(1, 10, "a")])


@pytest.mark.parametrize("remembered", [joins.MAX_PARTNER_VERDICTS, 1])
async def test_random_operations_keep_the_client_view_exact(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, remembered: int
) -> None:
    """Every shape of WHERE clause a join query takes (none; the joined row's terms; both sides'; an OR, which the
    split partner test does not take), with the partner verdicts remembered as usual and forgotten at every row."""
    monkeypatch.setattr(joins, "MAX_PARTNER_VERDICTS", remembered)
    rng = random.Random(2024)
    subs = harness.subs
    queries = {
        "c": [JOIN],
        "d": [ACTIVE],
        "e": [ACTIVE, "SELECT * FROM item WHERE owner = 3"],
        "f": [JOIN + " WHERE item.owner = 2 AND member.active = true AND item.name = 'x'"],
        "g": [JOIN + " WHERE item.name = 'y' OR member.active = false"],
    }
    views: dict[str, set[bytes]] = {}
    ctx = SqlContext(harness.engine.datastore)
    for step in range(160):
        if step == 40:
            for client, sqls in queries.items():
                applied = subs.subscribe(client, 1, 1, sqls)
                assert isinstance(applied, SubscribeApplied)
                views[client] = {bytes(r) for t in applied.rows.tables for r in t.rows}
        kind = rng.randrange(4)
        if kind == 0:
            out = await harness.call("put_item", rng.randrange(8), rng.randrange(5), rng.choice("xy"))
        elif kind == 1:
            out = await harness.call("del_item", rng.randrange(8))
        elif kind == 2:
            out = await harness.call("put_member", rng.randrange(8), rng.randrange(5), rng.random() < 0.6)
        else:
            out = await harness.call("del_member", rng.randrange(8))
        for client, view in views.items():
            for update in out.get(client, ()):
                for table in update.tables:
                    for entry in table.rows:
                        assert isinstance(entry, PersistentTableRows)
                        deletes, inserts = [bytes(r) for r in entry.deletes], [bytes(r) for r in entry.inserts]
                        assert len(set(deletes)) == len(deletes) and len(set(inserts)) == len(inserts)
                        assert set(deletes) <= view
                        view -= set(deletes)
                        assert not set(inserts) & view
                        view |= set(inserts)
            expected: set[bytes] = set()
            for sql in queries[client]:
                result = execute(compile_query(sql, ctx), harness.engine.datastore)
                assert result.row_bytes is not None
                expected |= set(result.row_bytes)
            assert view == expected, (client, step)


# ----- over a real socket (the chat module: online JOIN message on the indexed message.sender) -----


async def test_join_subscription_over_a_real_socket(tmp_path: Path) -> None:
    import aiohttp
    from aiohttp import web

    from autopilot_sync.examples.chat import module as chat
    from autopilot_sync.host.auth.tokens import SigningKey, TokenService
    from autopilot_sync.host.http_api import add_http_routes
    from autopilot_sync.host.websocket import add_websocket_route
    from autopilot_sync.host.ws_handshake import V3_PROTOCOL
    from autopilot_sync.spacetime.frames import split_server_body
    from autopilot_sync.spacetime.messages import (
        CallReducer,
        CallReducerFlags,
        InitialConnection,
        OneOffQuery,
        OneOffQueryResult,
        ReducerResult,
        Subscribe,
        TransactionUpdate,
        encode_client_message,
    )

    online_codec = bsatn.codec(chat.tables["online"].row_type)
    engine = HostEngine(chat, tmp_path, "chat", EngineConfig(fsync=False))
    await engine.start()
    tokens = TokenService(SigningKey.generate())
    app = web.Application()
    add_http_routes(app, engine, tokens)
    add_websocket_route(app, engine, tokens)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    address, port = runner.addresses[0][:2]
    base = f"http://{address}:{port}"
    inboxes: dict[Any, list[Any]] = {}

    async def recv(ws: aiohttp.ClientWebSocketResponse) -> Any:
        inbox = inboxes.setdefault(ws, [])
        while not inbox:
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.BINARY and msg.data[0] == 0, msg  # small frames: uncompressed
            inbox.extend(split_server_body(msg.data[1:]))
        return inbox.pop(0)

    async def call(ws: aiohttp.ClientWebSocketResponse, request_id: int, reducer: str, *args: Any) -> None:
        params = chat.reducers[reducer].params
        encoded = bsatn.codec(params).encode(args)
        await ws.send_bytes(encode_client_message(CallReducer(request_id, CallReducerFlags.DEFAULT, reducer, encoded)))

    try:
        async with aiohttp.ClientSession() as session:
            url = f"{base}/v1/database/chat/subscribe"
            reader = await session.ws_connect(url, protocols=(V3_PROTOCOL,))
            assert isinstance(await recv(reader), InitialConnection)
            writer = await session.ws_connect(url, protocols=(V3_PROTOCOL,))
            hello = await recv(writer)
            assert isinstance(hello, InitialConnection)
            sql = (
                "SELECT online.* FROM online JOIN message ON online.identity = message.sender"
                f" WHERE online.identity = 0x{hello.identity.hex}"
            )
            await reader.send_bytes(encode_client_message(Subscribe(1, 5, (sql,))))
            applied = await recv(reader)
            assert isinstance(applied, SubscribeApplied), applied
            assert [len(t.rows) for t in applied.rows.tables] == [0]
            await call(writer, 1, "send_message", "hi")
            assert isinstance(await recv(writer), ReducerResult)
            update = await recv(reader)
            assert isinstance(update, TransactionUpdate)
            (qs,) = update.query_sets
            (table,) = qs.tables
            (entry,) = table.rows
            assert isinstance(entry, PersistentTableRows) and table.table_name == "online"
            (row,) = [online_codec.decode(r) for r in entry.inserts]
            assert row[0] == hello.connection_id and not list(entry.deletes)
            await call(writer, 2, "send_message", "again")  # a second partner: nothing for the reader
            assert isinstance(await recv(writer), ReducerResult)
            await reader.send_bytes(encode_client_message(OneOffQuery(3, sql)))
            answer = await recv(reader)  # the first message after the second call: no update came in between
            assert isinstance(answer, OneOffQueryResult) and not isinstance(answer.result, str), answer
            (one_off,) = answer.result.tables
            assert len(one_off.rows) == 2  # one per (online, message) pair, as the real host
            async with session.post(f"{base}/v1/database/chat/sql", data=sql) as response:
                assert response.status == 200, await response.text()
                (result,) = await response.json()
            assert len(result["rows"]) == 2
            await writer.close()
            update = await recv(reader)
            assert isinstance(update, TransactionUpdate)
            (entry,) = update.query_sets[0].tables[0].rows
            assert isinstance(entry, PersistentTableRows) and not list(entry.inserts)
            assert [online_codec.decode(r)[0] for r in entry.deletes] == [hello.connection_id]
            await reader.close()
    finally:
        await runner.cleanup()
        await engine.stop()
