"""The host scenarios of conformance/scenarios.json, run with the Python SDK (`autopilot_sync.client`).

The official TypeScript SDK runs the same list in conformance/sdk_suite.mjs (tests/conformance/test_official_sdk.py);
both read the one list, so a scenario is added, changed or dropped for both SDKs at once. A scenario the Python SDK
cannot express carries its reason in the list (`not_expressible.python`) and is reported as skipped with that
reason; every other scenario must have a function here, and a function here must be in the list.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from autopilot_sync.client import (
    AuthenticationError,
    ChangeKind,
    Compression,
    ConnectionRejectedError,
    ReducerCommitted,
    ReducerFailed,
    ReducerInternalError,
    SubscriptionFailedError,
    UnknownReducerError,
    connect,
)
from autopilot_sync.client.connection import Connection
from autopilot_sync.devtools.host_tokens import BANNED_SUBJECT, host_signed_token
from autopilot_sync.devtools.processes import ServiceProcess, start_host
from autopilot_sync.spacetime.values import ConnectionId, Identity, TimeDuration, Timestamp

LIST = Path(__file__).resolve().parents[2] / "conformance" / "scenarios.json"
SCENARIOS: list[dict[str, Any]] = json.loads(LIST.read_text(encoding="utf-8"))["scenarios"]
DATABASE = "chat"
RUN = f"py{int(time.time() * 1000) % 10**8}"

pytestmark = pytest.mark.timeout(120)


class Host:
    """A chat-module host process and the facts scenarios hand on (as the JS suite's `shared`)."""

    def __init__(self, process: ServiceProcess, data_dir: Path) -> None:
        self.process = process
        self.url = process.url
        self.data_dir = data_dir
        self.shared: dict[str, Any] = {}

    def banned_token(self) -> str:
        """A token this host signed whose subject the chat module's `client_connected` refuses."""
        return host_signed_token(self.data_dir, BANNED_SUBJECT)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    data_dir = tmp_path_factory.mktemp("python-sdk-scenarios")
    process = start_host(data_dir, module="autopilot_sync.examples.chat", database=DATABASE)
    try:
        yield Host(process, data_dir)
    finally:
        process.stop()


async def _eventually(check: Callable[[], bool], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def _watch(conn: Connection, table: str) -> list[tuple[str, Any, Any]]:
    events: list[tuple[str, Any, Any]] = []
    conn.cache.on_insert(table, lambda row: events.append(("insert", None, row)))
    conn.cache.on_update(table, lambda old, new: events.append(("update", old, new)))
    conn.cache.on_delete(table, lambda row: events.append(("delete", None, row)))
    return events


async def s01_connect_anonymous(host: Host) -> None:
    async with await connect(host.url, DATABASE) as conn:
        assert conn.identity.hex.startswith("c200") and len(conn.identity.hex) == 64
        assert len(conn.token.split(".")) == 3
        assert len(conn.connection_id.hex) == 32
        assert conn.protocol == "v3.bsatn.spacetimedb"
        assert conn.options.compression is Compression.GZIP
        host.shared["anon"] = (conn.identity, conn.token)


async def s02_connect_with_token(host: Host) -> None:
    identity, token = host.shared["anon"]
    async with await connect(host.url, DATABASE, token=token) as conn:
        assert conn.identity == identity
        assert conn.protocol == "v3.bsatn.spacetimedb"
    # the exchange the official SDK makes (ours sends the token in the upgrade's header): a short-lived token
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{host.url}/v1/identity/websocket-token", headers={"Authorization": f"Bearer {token}"}) as answer,
    ):
        assert answer.status == 200
        short = (await answer.json())["token"]
    claims = json.loads(_b64(short.split(".")[1]))
    assert claims["exp"] - claims["iat"] <= 60


def _b64(part: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


async def s03_subscribe_insert_reducer_ok(host: Host) -> None:
    async with await connect(host.url, DATABASE) as conn:
        await (await conn.subscribe(["SELECT * FROM person"])).applied()
        before = len(conn.cache.rows("person"))
        events = _watch(conn, "person")
        name = f"alice-{RUN}"
        result = await conn.call("add_person", name, 25)
        assert isinstance(result, ReducerCommitted)
        [change] = result.changes  # the caller's insert comes with its reducer result, once
        assert change.kind is ChangeKind.INSERT and change.new.name == name and change.new.age == 25
        assert isinstance(change.new.id, int) and change.new.id > 0
        assert [(kind, row.name) for kind, _, row in events] == [("insert", name)]
        assert [p for p in conn.cache.rows("person") if p.name == name] == [change.new]
        assert len(conn.cache.rows("person")) == before + 1


async def s04_update_and_delete(host: Host) -> None:
    async with await connect(host.url, DATABASE) as conn:
        await (await conn.subscribe(["SELECT * FROM person"])).applied()
        events = _watch(conn, "person")
        name = f"bob-{RUN}"
        inserted = (await conn.call("add_person", name, 25)).changes[0].new  # type: ignore[union-attr]
        await conn.call("set_age", name, 40)
        assert events[-1][0] == "update" and events[-1][1] == inserted and events[-1][2].age == 40
        assert events[-1][2].id == inserted.id
        assert not any(kind == "delete" for kind, _, _ in events)
        assert conn.cache.find("person", inserted.id).age == 40
        await conn.call("delete_person", name)
        assert events[-1][0] == "delete" and events[-1][2].age == 40
        assert conn.cache.find("person", inserted.id) is None


async def s05_reducer_errors(host: Host) -> None:
    async with await connect(host.url, DATABASE) as conn:
        await (await conn.subscribe(["SELECT * FROM person"])).applied()
        failed = await conn.call("fail", "boom")
        assert isinstance(failed, ReducerFailed) and failed.message == "boom"
        assert not [p for p in conn.cache.rows("person") if p.name == "ghost-boom"]  # rolled back
        assert isinstance(await conn.call("panic"), ReducerInternalError)
        with pytest.raises(UnknownReducerError):  # refused from the schema, before anything is sent
            await conn.call("no_such_reducer")
        assert isinstance(await conn.call("add_person", f"after-errors-{RUN}", 1), ReducerCommitted)
        assert conn.is_open


async def s06_two_clients_unsubscribe(host: Host) -> None:
    async with await connect(host.url, DATABASE) as a, await connect(host.url, DATABASE) as b:
        qs = await b.subscribe(["SELECT * FROM message"])
        await qs.applied()
        seen = _watch(b, "message")
        text = f"hello-{RUN}"
        assert isinstance(await a.call("send_message", text), ReducerCommitted)
        await _eventually(lambda: any(row.text == text for _, _, row in seen), "B's insert of A's message")
        row = next(row for _, _, row in seen if row.text == text)
        assert row.sender == a.identity
        assert abs(row.sent.micros / 1e6 - time.time()) < 60
        await qs.unsubscribe()
        assert b.cache.rows("message") == []
        assert any(kind == "delete" and r.text == text for kind, _, r in seen)
        inserts = sum(kind == "insert" for kind, _, _ in seen)
        await a.call("send_message", f"after-unsub-{RUN}")
        await asyncio.sleep(0.6)
        assert sum(kind == "insert" for kind, _, _ in seen) == inserts


async def s07_where_clause(host: Host) -> None:
    async with await connect(host.url, DATABASE) as writer, await connect(host.url, DATABASE) as reader:
        await writer.call("add_person", f"old-{RUN}", 50)
        await writer.call("add_person", f"young-{RUN}", 20)
        seen = _watch(reader, "person")
        await (await reader.subscribe(["SELECT * FROM person WHERE age > 30"])).applied()
        cached = reader.cache.rows("person")
        assert cached and all(p.age > 30 for p in cached)
        assert {p.name for p in cached} >= {f"old-{RUN}"} and f"young-{RUN}" not in {p.name for p in cached}
        await writer.call("add_person", f"small-{RUN}", 30)
        await writer.call("add_person", f"later-{RUN}", 31)
        await _eventually(lambda: any(r.name == f"later-{RUN}" for _, _, r in seen), "the age-31 insert")
        assert not any(r.name == f"small-{RUN}" for _, _, r in seen)


def _extreme_row(row_id: int) -> tuple[Any, ...]:
    return (
        row_id, True, -128, 255, -32768, 65535, -(2**31), 2**32 - 1, -(2**63), 2**64 - 1, -(2**127), 2**128 - 1,
        -(2**255), 2**256 - 1, -3.4028234663852886e38, 1.7976931348623157e308, "héllo, wörld ✓ 🚀 \x00 end",
        bytes([0, 1, 127, 128, 255]), [-(2**31), 0, 2**31 - 1], "some value", Identity.from_hex("c2" + "ff" * 31),
        ConnectionId(2**128 - 1), Timestamp(2**63 - 1), TimeDuration(-(2**63)),
    )  # fmt: skip


def _other_extreme_row(row_id: int) -> tuple[Any, ...]:
    return (
        row_id, False, 127, 0, 32767, 0, 2**31 - 1, 0, 2**63 - 1, 0, 2**127 - 1, 0, 2**255 - 1, 0,
        1.401298464324817e-45, -0.0, "", b"", [], None, Identity(0), ConnectionId(0), Timestamp(-(2**63)),
        TimeDuration(2**63 - 1),
    )  # fmt: skip


def _same(a: Any, b: tuple[Any, ...]) -> bool:
    values = tuple(a)
    return len(values) == len(b) and all(
        (x == y and math.copysign(1, x) == math.copysign(1, y)) if isinstance(y, float) else x == y
        for x, y in zip(values, b, strict=True)
    )


async def s08_all_types_round_trip(host: Host) -> None:
    base = 1_000_000 + int(time.time()) % 1_000_000
    async with await connect(host.url, DATABASE) as conn, await connect(host.url, DATABASE) as other:
        await (await conn.subscribe(["SELECT * FROM all_types"])).applied()
        for row in (_extreme_row(base), _other_extreme_row(base + 1)):
            result = await conn.call("put_all_types", row)
            assert isinstance(result, ReducerCommitted), result
            assert _same(conn.cache.find("all_types", row[0]), row), row[0]
        await (await other.subscribe([f"SELECT * FROM all_types WHERE id = {base}"])).applied()
        [held] = other.cache.rows("all_types")
        assert _same(held, _extreme_row(base))
        replacement = _other_extreme_row(base)
        changes = (await conn.call("put_all_types", replacement)).changes  # type: ignore[union-attr]
        assert [c.kind for c in changes] == [ChangeKind.UPDATE]
        assert _same(changes[0].old, _extreme_row(base)) and _same(changes[0].new, replacement)


async def s09_subscription_error(host: Host) -> None:
    async with await connect(host.url, DATABASE) as conn:
        qs = await conn.subscribe(["SELECT * FROM no_such_table"])
        with pytest.raises(SubscriptionFailedError, match="no_such_table"):
            await qs.applied()
        assert conn.is_open
        await (await conn.subscribe(["SELECT * FROM person"])).applied()


async def s10_garbage_token_rejected(host: Host) -> None:
    with pytest.raises(AuthenticationError):
        await connect(host.url, DATABASE, token="not.a.token")


async def s11_large_transaction_compressed(host: Host) -> None:
    names = [f"bulk-{RUN}-{i}" for i in range(500)]
    async with (
        await connect(host.url, DATABASE) as writer,
        await connect(host.url, DATABASE, compression=Compression.GZIP) as reader,
    ):
        await (await reader.subscribe(["SELECT * FROM person"])).applied()
        batches: list[list[Any]] = []
        reader.cache.on_batch(lambda changes: batches.append([c for c in changes if c.table == "person"]))
        assert isinstance(await writer.call("add_people", names), ReducerCommitted)
        await _eventually(lambda: any(len(b) == 500 for b in batches), "the 500-row transaction")
        [batch] = [b for b in batches if b]
        assert sorted(c.new.name for c in batch) == sorted(names)  # one transaction, every row exactly once


async def s12_scheduled_reducer(host: Host) -> None:
    text = f"ping-{RUN}"
    async with await connect(host.url, DATABASE) as conn:
        await (await conn.subscribe(["SELECT * FROM message", "SELECT * FROM reminder"])).applied()
        reminders = _watch(conn, "reminder")
        messages = _watch(conn, "message")
        assert isinstance(await conn.call("schedule_reminder", text, 200_000), ReducerCommitted)
        [(_, _, row)] = [e for e in reminders if e[0] == "insert" and e[2].text == text]
        assert row.scheduled_at.tag == 1 and isinstance(row.scheduled_at.value, Timestamp)  # ScheduleAt::Time
        await _eventually(lambda: any(r.text == f"reminder: {text}" for _, _, r in messages), "the scheduled run")
        await _eventually(lambda: any(k == "delete" and r.text == text for k, _, r in reminders), "the row's delete")


async def s13_join_subscription(host: Host) -> None:
    async with await connect(host.url, DATABASE) as reader:
        writer = await connect(host.url, DATABASE)
        seen = _watch(reader, "online")
        who = writer.identity.hex
        sql = (
            "SELECT online.* FROM online JOIN message ON online.identity = message.sender "
            f"WHERE online.identity = 0x{who}"
        )
        await (await reader.subscribe([sql])).applied()
        assert reader.cache.rows("online") == []
        refused = await reader.subscribe(
            ["SELECT message.* FROM message JOIN online ON message.sender = online.identity"]
        )
        with pytest.raises(SubscriptionFailedError, match="Subscriptions require indexes on join columns"):
            await refused.applied()
        await writer.call("send_message", f"join-{RUN}")
        await _eventually(lambda: len(seen) == 1, "the writer's online row")
        assert seen[0][0] == "insert" and seen[0][2].identity == writer.identity
        assert seen[0][2].connection_id == writer.connection_id
        await writer.call("send_message", f"join2-{RUN}")
        await asyncio.sleep(0.2)
        assert len(seen) == 1 and len(reader.cache.rows("online")) == 1
        await writer.close()
        await _eventually(lambda: len(seen) == 2, "the delete when the writer leaves")
        assert seen[1][0] == "delete" and seen[1][2].identity == writer.identity
        assert reader.cache.rows("online") == []


async def s14_client_connected_refusal_is_a_disconnect(host: Host) -> None:
    with pytest.raises(ConnectionRejectedError) as refused:
        await connect(host.url, DATABASE, token=host.banned_token())
    assert refused.value.code == 1008
    assert refused.value.reason == "forbidden: this subject is banned"


IMPLEMENTED: dict[str, Callable[[Host], Awaitable[None]]] = {
    name[1:]: fn for name, fn in list(globals().items()) if name.startswith("s") and name[1:3].isdigit()
}


def test_the_python_suite_and_the_shared_list_name_the_same_scenarios() -> None:
    listed = {s["id"] for s in SCENARIOS}
    cannot = {s["id"] for s in SCENARIOS if "python" in s.get("not_expressible", {})}
    assert set(IMPLEMENTED) == listed - cannot, "scenarios.json and this file differ"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["id"] for s in SCENARIOS])
async def test_scenario_with_the_python_sdk(host: Host, scenario: dict[str, Any]) -> None:
    reason = scenario.get("not_expressible", {}).get("python")
    if reason is not None:
        pytest.skip(f"the Python SDK cannot express {scenario['id']}: {reason}")
    await IMPLEMENTED[scenario["id"]](host)
