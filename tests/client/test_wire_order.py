"""The SDK applies server frames strictly in wire order, whatever their compression (issue 20, item 7).

The official TypeScript SDK awaits each frame's decompression separately (`websocket_decompress_adapter.ts`), so a
small uncompressed `TransactionUpdate` can overtake the large compressed `SubscribeApplied` sent before it. SpacetimeDB
mixes compressed and uncompressed frames the same way, so our SDK must not. `WireOrderServerDouble` is a test double:
a tiny aiohttp WebSocket server that answers a Subscribe with a large compressed `SubscribeApplied` and, in the same
breath, a tiny uncompressed `TransactionUpdate` that changes a row of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from chat_session_doubles import SCHEMA, person_row

from autopilot_sync.client import connect
from autopilot_sync.spacetime import messages as m
from autopilot_sync.spacetime.frames import Compression, encode_v2_server_frame
from autopilot_sync.spacetime.values import ConnectionId, Identity

pytestmark = pytest.mark.timeout(30)
PEOPLE = 3000


class WireOrderServerDouble:
    """Answers the first Subscribe with a compressed SubscribeApplied immediately followed by a small update."""

    def __init__(self, compression: Compression) -> None:
        self.compression = compression
        self.tags: list[int] = []

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("v2.bsatn.spacetimedb",))
        await ws.prepare(request)
        hello = m.InitialConnection(Identity(1), ConnectionId(2), "token")
        await ws.send_bytes(encode_v2_server_frame(hello, Compression.NONE))
        async for msg in ws:
            sub = m.decode_client_message(msg.data)
            if not isinstance(sub, m.Subscribe):
                continue
            rows = m.query_rows([("person", [person_row(i, f"person-{i}", 1) for i in range(1, PEOPLE + 1)])])
            applied = encode_v2_server_frame(
                m.SubscribeApplied(sub.request_id, sub.query_set_id, rows), self.compression
            )
            change = m.PersistentTableRows(
                m.BsatnRowList.from_rows([person_row(1, "person-1", 2)]),
                m.BsatnRowList.from_rows([person_row(1, "person-1", 1)]),
            )
            tables = (m.TableUpdate("person", (change,)),)
            update = encode_v2_server_frame(
                m.TransactionUpdate((m.QuerySetUpdate(sub.query_set_id, tables),)), self.compression
            )
            self.tags = [applied[0], update[0]]
            # Back to back on one TCP stream: the wire order is applied, then update.
            await ws.send_bytes(applied)
            await ws.send_bytes(update)
        return ws


@pytest.fixture
async def serve() -> AsyncIterator[list[web.AppRunner]]:
    runners: list[web.AppRunner] = []
    yield runners
    for runner in runners:
        await runner.cleanup()


async def _start(runners: list[web.AppRunner], double: WireOrderServerDouble) -> str:
    app = web.Application()
    app.router.add_get("/v1/database/{name}/subscribe", double.handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    runners.append(runner)
    return f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.mark.parametrize("compression", [Compression.GZIP, Compression.BROTLI])
async def test_a_small_uncompressed_update_never_overtakes_a_large_compressed_subscribe_applied(
    serve: list[web.AppRunner], compression: Compression
) -> None:
    double = WireOrderServerDouble(compression)
    base_url = await _start(serve, double)
    conn = await connect(base_url, "chat", schema=SCHEMA, compression=compression)
    try:
        events: list[tuple[str, int, int]] = []
        conn.cache.on_insert("person", lambda row: events.append(("insert", row.id, row.age)))
        conn.cache.on_update("person", lambda old, new: events.append(("update", old.age, new.age)))
        qs = await conn.subscribe(["SELECT * FROM person"])
        await qs.applied()
        for _ in range(200):
            if any(kind == "update" for kind, *_ in events):
                break
            await asyncio.sleep(0.01)
        assert double.tags == [compression.tag, 0]  # compressed first, then uncompressed (under the threshold)
        assert len(events) == PEOPLE + 1
        assert events[-1] == ("update", 1, 2)  # the update came after every row of SubscribeApplied
        assert [e[0] for e in events[:-1]] == ["insert"] * PEOPLE
        assert conn.cache.find("person", 1).age == 2
        assert conn.cache.count("person") == PEOPLE
    finally:
        await conn.close()
