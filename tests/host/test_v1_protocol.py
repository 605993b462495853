"""The v1 subprotocols end to end: a v1 client of our own (BSATN and JSON) against a host process running the sync
module, judged by SpacetimeDB's v1 message definitions (`crates/client-api-messages/src/websocket/v1.rs`).

The pinned official SDK speaks only v2/v3, so `V1Client` below is the judge's client: it encodes client messages
and reads server messages with the shapes in `spacetime/messages_v1.py`, both formats shown as the same SATS-JSON
objects, so each scenario runs once per format.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from autopilot_sync.devtools.host_tokens import host_signed_token
from autopilot_sync.devtools.processes import ServiceProcess, start_host
from autopilot_sync.devtools.trust import call_set_trusted_issuer
from autopilot_sync.host.auth.tokens import LOCAL_ISSUER
from autopilot_sync.spacetime import messages_v1 as v1
from autopilot_sync.spacetime.frames import decode_server_frame
from autopilot_sync.spacetime.identity import identity_from_claims
from autopilot_sync.spacetime.rowlist import BsatnRowList, FixedSize, RowOffsets
from autopilot_sync.spacetime.values import Identity
from autopilot_sync.sync_bindings import ActiveConnection

SCOPES = {"scopes": ["sync.subscribe", "sync.append", "sync.checkpoint.write"]}
PRESENCE = "SELECT * FROM active_connection"
FORMATS = [v1.V1Format.BSATN, v1.V1Format.JSON]


@dataclass
class V1Client:
    """A minimal v1 client over a real socket: sends `messages_v1` client messages, reads server messages."""

    ws: aiohttp.ClientWebSocketResponse
    fmt: v1.V1Format

    async def send(self, message: v1.ClientMessage) -> None:
        data = v1.encode_client_message(self.fmt, message)
        if isinstance(data, str):
            await self.ws.send_str(data)
        else:
            await self.ws.send_bytes(data)

    async def receive(self) -> tuple[str, dict[str, Any]]:
        """The next server message as (variant name, fields)."""
        msg = await self.ws.receive(timeout=20)
        if self.fmt is v1.V1Format.BSATN:
            assert msg.type is aiohttp.WSMsgType.BINARY, msg
            value = v1.decode_server_message(self.fmt, decode_server_frame(msg.data))
        else:
            assert msg.type is aiohttp.WSMsgType.TEXT, msg
            value = v1.decode_server_message(self.fmt, msg.data)
        ((name, fields),) = value.items()
        return name, fields

    async def expect(self, name: str) -> dict[str, Any]:
        got, fields = await self.receive()
        assert got == name, (got, fields)
        return fields


def presence_rows(fmt: v1.V1Format, rows: Any) -> list[tuple[int, int]]:
    """`active_connection` rows of a row list as (connection id, identity), read per format."""
    if fmt is v1.V1Format.JSON:
        out = []
        for text in rows:
            row = json.loads(text)  # untyped SATS-JSON, as `/sql` rows: [[conn], ["0x…"], ...]
            out.append((int(row[0][0]), int(row[1][0], 16)))
        return sorted(out)
    hint = rows["size_hint"]
    size_hint = FixedSize(hint["FixedSize"]) if "FixedSize" in hint else RowOffsets(tuple(hint["RowOffsets"]))
    decoded = [ActiveConnection.decode(row) for row in BsatnRowList(size_hint, bytes.fromhex(rows["rows_data"]))]
    return sorted((row.connection_id.value, row.identity.value) for row in decoded)


def table_rows(fmt: v1.V1Format, table: dict[str, Any], side: str) -> list[tuple[int, int]]:
    """All rows on one side (`inserts`/`deletes`) of a v1 `TableUpdate`, over its query updates."""
    out: list[tuple[int, int]] = []
    for update in table["updates"]:
        pair = update["Uncompressed"] if fmt is v1.V1Format.BSATN else update
        out.extend(presence_rows(fmt, pair[side]))
    return sorted(out)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, Path]]:
    data_dir = tmp_path_factory.mktemp("v1host")
    owner = identity_from_claims(LOCAL_ISSUER, "owner")
    env = {"AUTOPILOT_SYNC_HOST_MAX_MESSAGE_BYTES": "65536", "AUTOPILOT_SYNC_HOST_OWNER_IDENTITY": owner.hex}
    process = start_host(data_dir, env=env)
    try:  # the sync module fails closed until its owner names the issuer of the tests' tokens (the host's own)
        owner_token = host_signed_token(data_dir, "owner")
        asyncio.run(call_set_trusted_issuer(process.url, "autopilot-sync", owner_token, LOCAL_ISSUER))
        yield process, data_dir
    finally:
        assert process.stop() == 0


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def connect(
    http: aiohttp.ClientSession, host: tuple[ServiceProcess, Path], fmt: v1.V1Format, subject: str
) -> tuple[V1Client, dict[str, Any], str]:
    process, data_dir = host
    token = host_signed_token(data_dir, subject, SCOPES)
    ws = await http.ws_connect(
        f"{process.url}/v1/database/autopilot-sync/subscribe",
        protocols=(fmt.protocol,),
        params={"token": token, "compression": "Gzip"},
    )
    assert ws.protocol == fmt.protocol
    client = V1Client(ws, fmt)
    return client, await client.expect("IdentityToken"), token


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.value)
async def test_v1_client_subscribes_calls_queries_and_unsubscribes_over_a_real_socket(
    host: tuple[ServiceProcess, Path], http: aiohttp.ClientSession, fmt: v1.V1Format
) -> None:
    a, a_hello, a_token = await connect(http, host, fmt, f"{fmt.value}-a")
    b, b_hello, _ = await connect(http, host, fmt, f"{fmt.value}-b")
    a_id = int(a_hello["identity"]["__identity__"], 16)
    b_id = int(b_hello["identity"]["__identity__"], 16)
    a_conn = int(a_hello["connection_id"]["__connection_id__"])
    b_conn = int(b_hello["connection_id"]["__connection_id__"])
    assert a_hello["token"] == a_token
    assert Identity(a_id) != Identity(b_id)

    # SubscribeSingle → SubscribeApplied with one table's rows (as inserts).
    await b.send(v1.SubscribeSingle(PRESENCE, request_id=1, query_id=7))
    applied = await b.expect("SubscribeApplied")
    assert applied["request_id"] == 1 and applied["query_id"] == {"id": 7}
    assert applied["rows"]["table_name"] == "active_connection"
    assert applied["rows"]["table_id"] >= 4096
    mine = {(a_conn, a_id), (b_conn, b_id)}
    assert mine <= set(table_rows(fmt, applied["rows"]["table_rows"], "inserts"))

    # Legacy Subscribe → InitialSubscription.
    await a.send(v1.Subscribe((PRESENCE,), request_id=2))
    initial = await a.expect("InitialSubscription")
    assert initial["request_id"] == 2
    (table,) = initial["database_update"]["tables"]
    assert mine <= set(table_rows(fmt, table, "inserts"))

    # A reducer call: the caller gets TransactionUpdate (committed, with its call), the other subscriber
    # TransactionUpdateLight with the same rows and nothing about the call.
    args: bytes | str = b"" if fmt is v1.V1Format.BSATN else "[]"
    await a.send(v1.CallReducer("heartbeat", args, request_id=3))
    update = await a.expect("TransactionUpdate")
    assert update["reducer_call"]["reducer_name"] == "heartbeat"
    assert update["reducer_call"]["request_id"] == 3
    assert int(update["caller_identity"]["__identity__"], 16) == a_id
    assert int(update["caller_connection_id"]["__connection_id__"]) == a_conn
    assert update["energy_quanta_used"] == {"quanta": 0}
    (changed,) = update["status"]["Committed"]["tables"]
    assert table_rows(fmt, changed, "inserts") == [(a_conn, a_id)] == table_rows(fmt, changed, "deletes")
    light = await b.expect("TransactionUpdateLight")
    (seen,) = light["update"]["tables"]
    assert seen["table_name"] == "active_connection" and seen["num_rows"] == 2
    assert table_rows(fmt, seen, "inserts") == [(a_conn, a_id)]

    # A reducer that refuses: TransactionUpdate(Failed) with the module's coded message.
    bad = v1.CallReducer(
        "ack_checkpoint",
        b"\x04\x00\x00\x00nope\x01\x00\x00\x00\x00\x00\x00\x00" if fmt is v1.V1Format.BSATN else '["nope", 1]',
        request_id=4,
    )
    await a.send(bad)
    failed = await a.expect("TransactionUpdate")
    assert failed["status"]["Failed"].startswith("unknown_stream:"), failed
    assert failed["reducer_call"]["request_id"] == 4

    # One-off queries: rows, then an error.
    await b.send(v1.OneOffQuery(b"\x01\x02", PRESENCE))
    answer = await b.expect("OneOffQueryResponse")
    assert answer["message_id"] == "0102" and answer["error"] == {"none": []}
    (listed,) = answer["tables"]
    assert listed["table_name"] == "active_connection"
    assert mine <= set(presence_rows(fmt, listed["rows"]))
    await b.send(v1.OneOffQuery(b"\x03", "SELECT * FROM no_such_table"))
    answer = await b.expect("OneOffQueryResponse")
    assert "no_such_table" in answer["error"]["some"] and answer["tables"] == []

    # A subscription the host refuses: SubscriptionError naming the request and the query.
    await b.send(v1.SubscribeSingle("SELECT * FROM no_such_table", request_id=5, query_id=8))
    error = await b.expect("SubscriptionError")
    assert error["request_id"] == {"some": 5} and error["query_id"] == {"some": 8}
    assert error["table_id"] == {"none": []} and "no_such_table" in error["error"]

    # Unsubscribe → UnsubscribeApplied with the rows to drop (as deletes).
    await b.send(v1.Unsubscribe(request_id=6, query_id=7))
    dropped = await b.expect("UnsubscribeApplied")
    assert dropped["request_id"] == 6 and dropped["query_id"] == {"id": 7}
    assert mine <= set(table_rows(fmt, dropped["rows"]["table_rows"], "deletes"))

    # SubscribeMulti / UnsubscribeMulti; a query id in use is reported as SpacetimeDB's v1 does.
    await b.send(v1.SubscribeMulti((PRESENCE, "SELECT * FROM sync_member"), request_id=7, query_id=9))
    multi = await b.expect("SubscribeMultiApplied")
    assert {t["table_name"] for t in multi["update"]["tables"]} == {"active_connection", "sync_member"}
    await b.send(v1.SubscribeMulti((PRESENCE,), request_id=8, query_id=9))
    in_use = await b.expect("TransactionUpdate")
    assert "Subscription with id QuerySetId { id: 9 } already exists" in in_use["status"]["Failed"]
    await b.send(v1.UnsubscribeMulti(request_id=9, query_id=9))
    gone = await b.expect("UnsubscribeMultiApplied")
    assert gone["request_id"] == 9 and len(gone["update"]["tables"]) == 2

    # The socket is still healthy: b's heartbeat reaches a (subscribed through the legacy set) as a light update.
    await b.send(v1.CallReducer("heartbeat", args, request_id=10))
    assert (await b.expect("TransactionUpdate"))["reducer_call"]["request_id"] == 10
    seen = (await a.expect("TransactionUpdateLight"))["update"]["tables"][0]
    assert table_rows(fmt, seen, "inserts") == [(b_conn, b_id)]
    await a.ws.close()
    await b.ws.close()


@pytest.mark.parametrize(
    ("fmt", "frame", "reason"),
    [
        (v1.V1Format.BSATN, b"\x09", "invalid sum tag"),
        (v1.V1Format.JSON, "{not json", "invalid v1 JSON message"),
        (v1.V1Format.JSON, '{"Subscribe": {"query_strings": "x", "request_id": 1}}', "invalid v1 JSON message"),
    ],
    ids=["bsatn-bad-tag", "json-not-json", "json-wrong-shape"],
)
async def test_a_malformed_v1_frame_closes_with_1011_and_the_decode_error(
    host: tuple[ServiceProcess, Path], http: aiohttp.ClientSession, fmt: v1.V1Format, frame: bytes | str, reason: str
) -> None:
    client, _, _ = await connect(http, host, fmt, f"malformed-{fmt.value}")
    if isinstance(frame, str):
        await client.ws.send_str(frame)
    else:
        await client.ws.send_bytes(frame)
    msg = await client.ws.receive(timeout=20)
    assert msg.type is aiohttp.WSMsgType.CLOSE, msg
    assert msg.data == 1011
    assert reason in msg.extra, msg.extra


async def test_an_oversized_v1_json_frame_closes_with_1009(
    host: tuple[ServiceProcess, Path], http: aiohttp.ClientSession
) -> None:
    client, _, _ = await connect(http, host, v1.V1Format.JSON, "oversized")
    await client.send(v1.OneOffQuery(b"\x01", "SELECT * FROM active_connection WHERE npub = '" + "x" * 70_000 + "'"))
    msg = await client.ws.receive(timeout=20)
    assert msg.type is aiohttp.WSMsgType.CLOSE, msg
    assert msg.data == 1009
