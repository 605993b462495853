"""Several row-level-security filters on one table: a row is visible when any of them admits it (SpacetimeDB ORs a
table's `client_visibility_filter`s).

Checked on the pure SQL layer (a property over random rows, senders and both filter shapes: single-table and a join),
and over real sockets against a host process: HTTP `/sql`, subscriptions (initial rows and deltas, for the join
filters also the deltas a membership change causes) and a WebSocket one-off query of the Python SDK. Filters of
different shapes (one single-table, one a join) are refused when the module loads, naming the table.
"""

from __future__ import annotations

import dataclasses
import json
import os
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autopilot_sync.bindings.module import Module
from autopilot_sync.client.connection import connect
from autopilot_sync.client.results import ReducerCommitted
from autopilot_sync.devtools.processes import start_host
from autopilot_sync.host.datastore import Datastore
from autopilot_sync.host.engine import HostEngine
from autopilot_sync.host.hosted_module import PythonModule
from autopilot_sync.host.sql import SqlContext, VisibilityFilterError, compile_query, execute
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime.values import Identity

MINE = "SELECT * FROM note WHERE owner = :sender"
SHARED = "SELECT * FROM note WHERE shared = true"
MEMBER_OF = "SELECT doc.* FROM doc JOIN member ON doc.team = member.team WHERE member.who = :sender"
LEAD_OF = "SELECT doc.* FROM doc JOIN member ON doc.team = member.team WHERE member.lead = :sender"


def notes_module(*filters: str) -> Module:
    """`note` rows owned by their writer, some shared; `doc` rows of teams, `member` rows naming who is in a team."""
    module = Module("notes", version="1")
    module.table("note", [("id", at.U64), ("owner", at.IDENTITY), ("shared", at.BOOL)], primary_key="id")
    module.table("doc", [("id", at.U64), ("team", at.U64)], primary_key="id", indexes=[("team",)])
    module.table(
        "member", [("id", at.U64), ("team", at.U64), ("who", at.IDENTITY), ("lead", at.IDENTITY)], indexes=[("team",)]
    )
    for sql in filters:
        module.client_visibility_filter("doc" if "doc" in sql else "note", sql)
    return module


def put(datastore: Datastore, table: str, row: tuple[Any, ...]) -> None:
    store = datastore[table]
    store.put(store.encode(row), row)


def visible(datastore: Datastore, sql: str, sender: Identity) -> set[int]:
    plan = compile_query(sql, SqlContext(datastore, sender=sender))
    return {row[0] for row in execute(plan, datastore).rows}


people = st.sampled_from([Identity(1), Identity(2), Identity(3)])
notes = st.lists(st.tuples(people, st.booleans()), max_size=12)
members = st.lists(st.tuples(st.integers(1, 3), people, people), max_size=6)
docs = st.lists(st.integers(1, 4), max_size=8)


@settings(max_examples=40, deadline=None)
@given(rows=notes, sender=people)
def test_a_note_is_visible_when_any_of_its_tables_filters_admits_it(
    rows: list[tuple[Identity, bool]], sender: Identity
) -> None:
    datastore = Datastore(PythonModule(notes_module(MINE, SHARED)))
    for i, (owner, shared) in enumerate(rows):
        put(datastore, "note", (i, owner, shared))
    expected = {i for i, (owner, shared) in enumerate(rows) if owner == sender or shared}
    assert visible(datastore, "SELECT * FROM note", sender) == expected
    assert visible(datastore, "SELECT * FROM note WHERE shared = false", sender) == {
        i for i in expected if not rows[i][1]
    }


@settings(max_examples=40, deadline=None)
@given(doc_teams=docs, member_rows=members, sender=people)
def test_a_doc_is_visible_when_any_of_its_join_filters_admits_it(
    doc_teams: list[int], member_rows: list[tuple[int, Identity, Identity]], sender: Identity
) -> None:
    datastore = Datastore(PythonModule(notes_module(MEMBER_OF, LEAD_OF)))
    for i, team in enumerate(doc_teams):
        put(datastore, "doc", (i, team))
    for i, (team, who, lead) in enumerate(member_rows):
        put(datastore, "member", (i, team, who, lead))
    teams = {team for team, who, lead in member_rows if sender in (who, lead)}
    assert visible(datastore, "SELECT * FROM doc", sender) == {i for i, team in enumerate(doc_teams) if team in teams}


def test_filters_of_different_shapes_on_one_table_are_refused_when_the_module_loads(tmp_path: Path) -> None:
    module = notes_module(MEMBER_OF)
    module.client_visibility_filter("doc", "SELECT * FROM doc WHERE team = 1")
    with pytest.raises(VisibilityFilterError) as refused:
        HostEngine(module, tmp_path, "notes")
    assert refused.value.table == "doc" and "differ in their joins" in str(refused.value)


MODULE_SOURCE = textwrap.dedent(
    f"""
    from autopilot_sync.bindings.module import Module
    from autopilot_sync.spacetime import algebraic as at

    module = Module("notes", version="1")
    module.table("note", [("id", at.U64), ("owner", at.IDENTITY), ("shared", at.BOOL)], primary_key="id")
    module.table("doc", [("id", at.U64), ("team", at.U64)], primary_key="id", indexes=[("team",)])
    module.table(
        "member",
        [("id", at.U64), ("team", at.U64), ("who", at.IDENTITY), ("lead", at.IDENTITY)],
        primary_key="id",
        indexes=[("team",)],
    )
    module.client_visibility_filter("note", {MINE!r})
    module.client_visibility_filter("note", {SHARED!r})
    module.client_visibility_filter("doc", {MEMBER_OF!r})
    module.client_visibility_filter("doc", {LEAD_OF!r})


    @module.reducer(("id", at.U64), ("shared", at.BOOL))
    def add_note(ctx, id, shared):
        ctx.db.note.insert((id, ctx.sender, shared))


    @module.reducer(("id", at.U64), ("team", at.U64))
    def add_doc(ctx, id, team):
        ctx.db.doc.insert((id, team))


    @module.reducer(("id", at.U64), ("team", at.U64), ("who", at.IDENTITY), ("lead", at.IDENTITY))
    def add_member(ctx, id, team, who, lead):
        ctx.db.member.insert((id, team, who, lead))
    """
)


async def _identity_token(http: aiohttp.ClientSession, url: str) -> str:
    async with http.post(f"{url}/v1/identity") as response:
        return str((await response.json())["token"])


async def _sql(http: aiohttp.ClientSession, url: str, token: str) -> set[int]:
    async with http.post(
        f"{url}/v1/database/notes/sql", data="SELECT * FROM note", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        body: Any = json.loads(await response.text())
    assert response.status == 200, body
    return {int(row[0]) for row in body[0]["rows"]}


async def test_every_read_path_of_a_real_host_shows_the_union_of_a_tables_filters(tmp_path: Path) -> None:
    (tmp_path / "notes_union_module.py").write_text(MODULE_SOURCE)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    host = start_host(tmp_path / "data", module="notes_union_module", database="notes", env=env)
    try:
        async with aiohttp.ClientSession() as http:
            alice, bob = await _identity_token(http, host.url), await _identity_token(http, host.url)
            async with (
                await connect(host.url, "notes", token=alice) as a,
                await connect(host.url, "notes", token=bob) as b,
            ):
                for args in ((1, False), (2, True)):
                    assert isinstance(await a.call("add_note", *args), ReducerCommitted)
                assert isinstance(await b.call("add_note", 3, False), ReducerCommitted)
                assert await _sql(http, host.url, alice) == {1, 2}
                assert await _sql(http, host.url, bob) == {2, 3}

                seen: list[int] = []
                await (await b.subscribe(["SELECT * FROM note"])).applied()
                assert {row[0] for row in b.cache.rows("note")} == {2, 3}
                b.cache.on_insert("note", lambda row: seen.append(row[0]))
                for args in ((4, True), (5, False), (6, True)):
                    assert isinstance(await a.call("add_note", *args), ReducerCommitted)
                await b.call("add_note", 7, False)  # answered after the deltas of alice's calls
                assert seen == [4, 6, 7]
                one_off = await b.one_off_query("SELECT * FROM note")
                assert {row[0] for row in one_off.rows("note")} == {2, 3, 4, 6, 7}

                # two join filters: bob sees the docs of teams he is a member of or leads, and follows membership
                nobody = Identity(0)
                await a.call("add_member", 1, 1, b.identity, nobody)  # bob is in team 1
                await a.call("add_doc", 10, 1)
                await a.call("add_doc", 20, 2)
                docs: list[int] = []
                await (await b.subscribe(["SELECT * FROM doc"])).applied()
                assert {row[0] for row in b.cache.rows("doc")} == {10}
                b.cache.on_insert("doc", lambda row: docs.append(row[0]))
                await a.call("add_doc", 11, 1)
                await a.call("add_doc", 21, 2)
                await a.call("add_member", 2, 2, nobody, b.identity)  # now bob leads team 2: its docs appear
                await b.call("add_note", 8, False)  # answered after the deltas of alice's calls
                assert sorted(docs) == [11, 20, 21]
                assert {row[0] for row in b.cache.rows("doc")} == {10, 11, 20, 21}
    finally:
        host.stop()


def test_a_typescript_modules_rules_are_grouped_by_their_table_in_declaration_order() -> None:
    from autopilot_sync.host.js_module import _filters_by_table

    definition = notes_module(MINE, MEMBER_OF, SHARED, LEAD_OF).module_def()
    assert definition.row_level_security == (MINE, SHARED, MEMBER_OF, LEAD_OF)  # as the module groups them
    reordered = dataclasses.replace(definition, row_level_security=(MINE, MEMBER_OF, SHARED, LEAD_OF))
    assert _filters_by_table(reordered) == {"note": (MINE, SHARED), "doc": (MEMBER_OF, LEAD_OF)}
