"""No answer leaves a real host before the commits it reveals are durable; unsubscribe is ordered with commits.

A real host and control run as child processes with the fsync-gate test fault loaded into the host
(tests/faults/fsync_gate/): the test holds the host's disk flush open, so "before durability" is a state the test
controls, not a millisecond race. While the gate is held, nothing that reveals a non-durable commit may arrive; once
released, the answers come in the order SpacetimeDB sends them.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import brotli
import pytest

from autopilot_sync.client import ReducerCommitted, connect
from autopilot_sync.contract.canonical import hash_value
from autopilot_sync.control.client import fetch_session_token
from autopilot_sync.devtools.stack import DATABASE, LocalStack
from autopilot_sync.host.ws_handshake import V3_PROTOCOL
from autopilot_sync.module import module
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime.frames import encode_v3_client_frames, split_server_body
from autopilot_sync.spacetime.messages import (
    CallReducer,
    CallReducerFlags,
    ClientMessage,
    InitialConnection,
    OneOffQuery,
    OneOffQueryResult,
    PersistentTableRows,
    ReducerErr,
    ReducerOk,
    ReducerResult,
    ServerMessage,
    Subscribe,
    SubscribeApplied,
    TransactionUpdate,
    Unsubscribe,
    UnsubscribeApplied,
    UnsubscribeFlags,
)
from autopilot_sync.spacetime.values import Identity, Timestamp
from autopilot_sync.sync_bindings import AppendSyncEventsBatchItem

#: Long enough that an answer sent without waiting for the disk would certainly have arrived.
QUIET_SECONDS = 0.5
#: The host's per-connection send-queue bound in messages, small so held answers can exceed it.
SEND_QUEUE_MAX_MESSAGES = 64
STREAMS = ("dup", "sql", "http", "race", "flood")
APPEND = module.reducers["append_sync_events"].params


FsyncGate = Any  # tests/conftest.py's FsyncGate (fixture `fsync_gate_at`)


@dataclass
class Stack:
    stack: LocalStack
    gate: FsyncGate
    token: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, fsync_gate_at: Any) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("durable")
    gate = fsync_gate_at(root)
    local = LocalStack(root)
    local.host_env.update(gate.env(), AUTOPILOT_SYNC_HOST_SEND_QUEUE_MAX_MESSAGES=str(SEND_QUEUE_MAX_MESSAGES))
    local.start_all(runtime=False)
    try:
        grant = asyncio.run(
            fetch_session_token(
                local.control_url, local.producer_key, ("sync.append", "sync.subscribe"), STREAMS, None, "test"
            )
        )
        asyncio.run(_read_own_streams(local.host_url, grant.token, grant.identity))
        yield Stack(local, gate, grant.token)
    finally:
        gate.release()
        local.stop_all()


async def _read_own_streams(host_url: str, token: str, identity: str) -> None:
    """Make the test key a reader of its streams: events are visible to a stream's readers only."""
    connection = await connect(host_url, DATABASE, token=token)
    try:
        for stream in STREAMS:
            result = await connection.call("grant_stream_readers", stream, [Identity.from_hex(identity)])
            assert isinstance(result, ReducerCommitted), result
    finally:
        await connection.close()


@pytest.fixture
def gate(stack: Stack) -> Iterator[FsyncGate]:
    try:
        yield stack.gate
    finally:
        stack.gate.release()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


class Client:
    """The v3 protocol by hand: several messages in one frame, every server message in arrival order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.inbox: list[ServerMessage] = []

    @classmethod
    async def open(cls, stack: Stack, session: aiohttp.ClientSession) -> Client:
        url = f"{stack.stack.host_url}/v1/database/{DATABASE}/subscribe"
        ws = await session.ws_connect(url, protocols=(V3_PROTOCOL,), headers={"Authorization": f"Bearer {stack.token}"})
        client = cls(ws)
        await client.expect(InitialConnection)
        return client

    async def send(self, *messages: ClientMessage) -> None:
        (frame,) = encode_v3_client_frames(messages, cap=1 << 20)
        await self.ws.send_bytes(frame)

    async def recv(self, within: float = 10.0) -> ServerMessage:
        while not self.inbox:
            msg = await self.ws.receive(timeout=within)
            if msg.type is not aiohttp.WSMsgType.BINARY:
                raise ClosedError(self.ws.close_code, str(msg.extra or ""))
            data: bytes = msg.data
            body = data[1:]
            if data[0] == 1:
                body = brotli.decompress(body)
            elif data[0] == 2:
                body = gzip.decompress(body)
            self.inbox.extend(split_server_body(body))
        return self.inbox.pop(0)

    async def expect(self, kind: type[Any]) -> Any:
        message = await self.recv()
        assert isinstance(message, kind), f"expected {kind.__name__}, got {message!r:.300}"
        return message

    async def nothing_arrives(self) -> None:
        """Assert the host sends nothing for QUIET_SECONDS (the gate is held: everything must wait for the disk)."""
        with pytest.raises(TimeoutError):
            message = await self.recv(within=QUIET_SECONDS)
            raise AssertionError(f"arrived before its commit was durable: {message!r:.300}")

    async def close(self) -> None:
        await self.ws.close()


class ClosedError(Exception):
    """The host closed the socket: (close code, reason)."""


def event(stream: str, seq: int, body: Any, *, key: str | None = None) -> AppendSyncEventsBatchItem:
    text, digest = hash_value(body)
    return AppendSyncEventsBatchItem(
        stream_id=stream,
        idempotency_key=key or f"{stream}:{seq}",
        kind="test.event",
        payload=text,
        payload_hash=digest,
        expected_seq=seq,
        published_at=Timestamp(1_700_000_000_000_000),
    )


def append(request_id: int, *events: AppendSyncEventsBatchItem) -> CallReducer:
    args = bsatn.codec(APPEND).encode((list(events),))
    return CallReducer(request_id, CallReducerFlags.DEFAULT, "append_sync_events", args)


def answers(messages: list[ServerMessage]) -> list[tuple[int, str]]:
    """(request id, ok / error text) of the reducer results among `messages`, in order."""
    out = []
    for message in messages:
        if isinstance(message, ReducerResult):
            result = message.result
            text = "ok" if isinstance(result, ReducerOk) else bytes(getattr(result, "error", b""))[4:].decode()
            out.append((message.request_id, text))
    return out


async def test_duplicate_append_is_answered_only_after_the_original_is_durable(
    stack: Stack, gate: FsyncGate, session: aiohttp.ClientSession
) -> None:
    client = await Client.open(stack, session)
    original = event("dup", 1, {"n": 1})
    gate.hold()
    # One frame: the original, a retry of it (a duplicate: succeeds without writing), and a different event at the
    # same seq (a sequence conflict naming head 1, which is not durable yet).
    await client.send(append(1, original), append(2, original), append(3, event("dup", 1, {"n": 2}, key="other")))
    await gate.wait_blocked()
    await client.nothing_arrives()
    gate.release()
    received = [await client.recv() for _ in range(3)]
    got = answers(received)
    assert [request for request, _ in got] == [1, 2, 3], got
    assert got[0][1] == "ok" and got[1][1] == "ok", got
    assert got[2][1].startswith("sequence_conflict"), got
    assert isinstance(received[2].result, ReducerErr)
    await client.close()


async def test_sql_serves_a_row_only_once_it_is_durable(
    stack: Stack, gate: FsyncGate, session: aiohttp.ClientSession
) -> None:
    writer = await Client.open(stack, session)
    gate.hold()
    await writer.send(append(1, event("sql", 1, {"n": 1})))
    await gate.wait_blocked()
    url = f"{stack.stack.host_url}/v1/database/{DATABASE}/sql"
    headers = {"Authorization": f"Bearer {stack.token}"}

    async def query() -> list[Any]:
        async with session.post(url, data="SELECT * FROM sync_event WHERE stream_id = 'sql'", headers=headers) as r:
            assert r.status == 200, await r.text()
            body: list[Any] = await r.json()
            return list(body[0]["rows"])

    answer = asyncio.ensure_future(query())
    done, _ = await asyncio.wait({answer}, timeout=QUIET_SECONDS)
    assert not done, f"/sql answered before the row was durable: {answer.result() if done else ''}"
    gate.release()
    assert len(await answer) == 1
    assert answers([await writer.recv()]) == [(1, "ok")]
    await writer.close()


async def test_http_duplicate_call_is_answered_only_after_the_original_is_durable(
    stack: Stack, gate: FsyncGate, session: aiohttp.ClientSession
) -> None:
    writer = await Client.open(stack, session)
    original = event("http", 1, {"n": 1})
    gate.hold()
    await writer.send(append(1, original))
    await gate.wait_blocked()
    url = f"{stack.stack.host_url}/v1/database/{DATABASE}/call/append_sync_events"
    published = {"__timestamp_micros_since_unix_epoch__": 1_700_000_000_000_000}
    args = [[["http", original[1], "test.event", original[3], original[4], 1, published]]]
    headers = {"Authorization": f"Bearer {stack.token}"}

    async def call() -> int:
        async with session.post(url, json=args, headers=headers) as r:
            assert r.status == 200, await r.text()
            return r.status

    retry = asyncio.ensure_future(call())
    done, _ = await asyncio.wait({retry}, timeout=QUIET_SECONDS)
    assert not done, f"the duplicate was answered {retry.result() if done else ''} before the original was durable"
    gate.release()
    assert await retry == 200
    assert answers([await writer.recv()]) == [(1, "ok")]
    await writer.close()


def _rows(rows: Any) -> set[bytes]:
    return {bytes(r) for table in rows.tables for r in table.rows}


def apply(sent: dict[int, set[bytes]], update: TransactionUpdate) -> None:
    """What the SDK's cache does with an update: per query set, add the inserts and remove the deletes."""
    for query_set in update.query_sets:
        for table in query_set.tables:
            for rows in table.rows:
                assert isinstance(rows, PersistentTableRows)
                sent[query_set.query_set_id] |= set(map(bytes, rows.inserts))
                sent[query_set.query_set_id] -= set(map(bytes, rows.deletes))


async def test_unsubscribe_drops_only_rows_the_client_was_sent(
    stack: Stack, gate: FsyncGate, session: aiohttp.ClientSession
) -> None:
    reader = await Client.open(stack, session)
    writer = await Client.open(stack, session)
    await reader.send(
        Subscribe(1, 1, ("SELECT * FROM sync_event WHERE stream_id = 'race'",)),
        Subscribe(2, 2, ("SELECT * FROM sync_event WHERE stream_id = 'race' AND seq >= 1",)),
    )
    sent: dict[int, set[bytes]] = {}
    for _ in range(2):
        applied = await reader.expect(SubscribeApplied)
        sent[applied.query_set_id] = _rows(applied.rows)
    await writer.send(append(1, event("race", 1, {"n": 1})))
    assert answers([await writer.recv()]) == [(1, "ok")]
    apply(sent, await reader.expect(TransactionUpdate))
    assert len(sent[1]) == len(sent[2]) == 1
    gate.hold()
    await writer.send(append(2, event("race", 2, {"n": 2})), append(3, event("race", 3, {"n": 3})))
    await gate.wait_blocked()
    await reader.send(Unsubscribe(3, 2, UnsubscribeFlags.SEND_DROPPED_ROWS))
    await reader.nothing_arrives()
    gate.release()
    # Replay what the reader was sent, per query set, as the SDK's cache does; the dropped rows must be exactly the
    # rows set 2 holds, and set 1 must keep all three.
    while True:
        message = await reader.recv()
        if not isinstance(message, TransactionUpdate):
            break
        apply(sent, message)
    assert isinstance(message, UnsubscribeApplied), message
    assert message.rows is not None
    assert _rows(message.rows) == sent[2], "dropped rows differ from the rows set 2 was sent"
    del sent[2]
    await writer.send(append(4, event("race", 4, {"n": 4})))
    update = await reader.expect(TransactionUpdate)
    assert [u.query_set_id for u in update.query_sets] == [1], "the unsubscribed set still gets updates"
    apply(sent, update)
    assert len(sent[1]) == 4
    await reader.close()
    await writer.close()


async def test_held_answers_count_toward_the_send_queue_bound(
    stack: Stack, gate: FsyncGate, session: aiohttp.ClientSession
) -> None:
    flooder = await Client.open(stack, session)
    gate.hold()
    await flooder.send(append(1, event("flood", 1, {"n": 1})))
    await gate.wait_blocked()
    query = "SELECT * FROM sync_event WHERE stream_id = 'flood'"
    # Every answer is held behind the non-durable append; more of them than the bound allows must close the socket
    # now, not once the disk lets them go.
    await flooder.send(*(OneOffQuery(i, query) for i in range(2 * SEND_QUEUE_MAX_MESSAGES)))
    with pytest.raises(ClosedError) as closed:
        message = await flooder.recv(within=10)
        raise AssertionError(f"expected the socket to close, got {message!r:.200}")
    assert closed.value.args == (1008, "send queue full: client too slow")
    gate.release()
    # Everyone else is served as before.
    reader = await Client.open(stack, session)
    await reader.send(OneOffQuery(1, query))
    result = await reader.expect(OneOffQueryResult)
    assert not isinstance(result.result, str), result.result
    assert len(_rows(result.result)) == 1
    await reader.close()
