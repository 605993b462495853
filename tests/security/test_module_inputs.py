"""Attacks on the sync module's inputs through real host and control processes (issue 16 items 5, 7, 12, 13, 14).

Every refusal must be one of the module's typed codes (`ReducerFailed` whose text starts with the code), never an
internal error or a reducer panic carrying internal text; and nothing the caller may not read is revealed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import pytest
from module_owner import call_set_sync_limits, make_owner

from autopilot_sync.client import ReducerCommitted, connect
from autopilot_sync.client.connection import Connection
from autopilot_sync.client.results import ReducerCallResult, ReducerFailed
from autopilot_sync.contract.canonical import hash_value, payload_hash
from autopilot_sync.contract.codes import SyncErrorCode
from autopilot_sync.control.client import fetch_session_token
from autopilot_sync.devtools.stack import DATABASE, LocalStack
from autopilot_sync.module.limits import DEFAULT_LIMITS
from autopilot_sync.nostr.keys import SecretKey
from autopilot_sync.spacetime.values import Timestamp
from autopilot_sync.sync_bindings import AppendSyncEventsBatchItem

#: Small module limits for this stack, so "one byte over the limit" is cheap to send.
KIND_LIMIT = 32
KEY_LIMIT = 64
STREAM_LIMIT = 48
DEPTH_LIMIT = 16
#: A second producer, allowed to publish, used to attack the first one's streams.
OTHER_PRODUCER = SecretKey.generate()


#: The database owner, who sets the small limits through the module's admin reducer (module/config.py).
OWNER = SecretKey.generate()
SMALL_LIMITS = replace(
    DEFAULT_LIMITS,
    max_kind_bytes=KIND_LIMIT,
    max_idempotency_key_bytes=KEY_LIMIT,
    max_stream_id_bytes=STREAM_LIMIT,
    max_payload_depth=DEPTH_LIMIT,
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    running = LocalStack(tmp_path_factory.mktemp("module-inputs"))
    make_owner(running, OWNER)
    running.control_env["AUTOPILOT_SYNC_CONTROL_APPEND_ALLOWLIST"] = ",".join(
        (running.producer_key.public_key().hex, OTHER_PRODUCER.public_key().hex)
    )
    try:
        running.start_all(runtime=False)
        status, body = asyncio.run(call_set_sync_limits(running, OWNER, SMALL_LIMITS))
        assert status == 200, body
        yield running
    finally:
        running.stop_all()


async def session(
    stack: LocalStack, scopes: tuple[str, ...], streams: tuple[str, ...], key: SecretKey | None = None
) -> Connection:
    """A WebSocket connection with a control-issued token for `scopes` on `streams`."""
    token = await fetch_session_token(stack.control_url, key or stack.producer_key, scopes, streams, None, "test")
    return await connect(stack.host_url, DATABASE, token=token.token)


@pytest.fixture
async def producer(stack: LocalStack) -> AsyncIterator[Connection]:
    connection = await session(stack, ("sync.append", "sync.subscribe", "sync.admin"), ("*",))
    yield connection
    await connection.close()


def event(stream: str, seq: int, body: Any, *, key: str | None = None, kind: str = "test") -> AppendSyncEventsBatchItem:
    text, digest = hash_value(body)
    return AppendSyncEventsBatchItem(
        stream_id=stream,
        idempotency_key=key or f"{stream}:{seq}",
        kind=kind,
        payload=text,
        payload_hash=digest,
        expected_seq=seq,
        published_at=Timestamp.now(),
    )


def raw_event(stream: str, seq: int, payload_text: str, *, key: str | None = None) -> AppendSyncEventsBatchItem:
    """An event whose payload text (ASCII JSON) is sent as is, with the hash of that text."""
    digest = payload_hash(payload_text)
    return AppendSyncEventsBatchItem(
        stream_id=stream,
        idempotency_key=key or f"{stream}:{seq}",
        kind="test",
        payload=payload_text,
        payload_hash=digest,
        expected_seq=seq,
        published_at=Timestamp.now(),
    )


def refused_with(result: ReducerCallResult, code: SyncErrorCode) -> str:
    """The refusal text, after checking it is the module's typed `code` and carries no internals."""
    assert isinstance(result, ReducerFailed), result
    assert result.code is code, result.message
    for internal in ("panicked", "Traceback", "RecursionError", "UnicodeEncodeError", 'File "'):
        assert internal not in result.message
    assert len(result.message) < 400
    return result.message


async def test_an_admin_token_for_one_stream_cannot_trim_or_reset_another(
    stack: LocalStack, producer: Connection
) -> None:
    for stream in ("adm-a", "adm-b"):
        assert isinstance(
            await producer.call("append_sync_events", [event(stream, 1, {}), event(stream, 2, {})]), ReducerCommitted
        )
    narrow = await session(stack, ("sync.admin", "sync.subscribe"), ("adm-a",))
    try:
        refused_with(await narrow.call("trim_stream", "adm-b", 2), SyncErrorCode.FORBIDDEN_STREAM)
        refused_with(await narrow.call("reset_stream", "adm-b"), SyncErrorCode.FORBIDDEN_STREAM)
        assert isinstance(await narrow.call("trim_stream", "adm-a", 2), ReducerCommitted)
    finally:
        await narrow.close()
    # Heads are visible to the stream's readers only: the producer makes itself one to check adm-b is untouched.
    granted = await producer.call("grant_stream_readers", "adm-b", [producer.identity])
    assert isinstance(granted, ReducerCommitted), granted
    rows = (await producer.one_off_query("SELECT * FROM stream_head WHERE stream_id = 'adm-b'")).rows("stream_head")
    untouched = [(row.head_seq, row.retained_from_seq, row.epoch) for row in rows]
    assert untouched == [(2, 1, 1)]  # head, floor and epoch untouched


async def test_checkpoints_are_refused_on_streams_that_do_not_exist_and_on_huge_ids(
    stack: LocalStack, producer: Connection
) -> None:
    assert isinstance(await producer.call("append_sync_events", [event("ck-real", 1, {})]), ReducerCommitted)
    reader = await session(stack, ("sync.subscribe", "sync.checkpoint.write"), ("*",), SecretKey.generate())
    try:
        refused_with(await reader.call("ack_checkpoint", "ck-never-existed", 0), SyncErrorCode.UNKNOWN_STREAM)
        message = refused_with(
            await reader.call("ack_checkpoint", "x" * 8 * 1024 * 1024, 0), SyncErrorCode.INVALID_EVENT
        )
        assert "stream_id" in message
        other = await session(stack, ("sync.subscribe", "sync.checkpoint.write"), ("ck-mine",), SecretKey.generate())
        try:
            refused_with(await other.call("ack_checkpoint", "ck-real", 1), SyncErrorCode.FORBIDDEN_STREAM)
        finally:
            await other.close()
        assert isinstance(await reader.call("ack_checkpoint", "ck-real", 1), ReducerCommitted)
        rows = (await reader.one_off_query("SELECT * FROM stream_checkpoint")).rows("stream_checkpoint")
        assert sorted(row.stream_id for row in rows if row.identity == reader.identity) == ["ck-real"]
    finally:
        await reader.close()


@pytest.mark.parametrize(
    ("field", "limit"), [("stream_id", STREAM_LIMIT), ("idempotency_key", KEY_LIMIT), ("kind", KIND_LIMIT)]
)
async def test_event_fields_are_bounded_by_the_configured_limits(producer: Connection, field: str, limit: int) -> None:
    stream = f"bound-{field}"
    base = dict(zip(("stream_id", "idempotency_key", "kind"), (stream, f"{stream}:1", "test"), strict=True))
    text, digest = hash_value({"n": 1})
    for size in (limit + 1, 4 * 1024 * 1024):
        fields = {**base, field: "é" * (size // 2) + "x" * (size % 2)}  # multi-byte: the bound is in UTF-8 bytes
        args = (fields["stream_id"], fields["idempotency_key"], fields["kind"], text, digest, 1, Timestamp.now())
        message = refused_with(await producer.call("append_sync_events", [args]), SyncErrorCode.INVALID_EVENT)
        assert field in message and "é" not in message  # named, never echoed
    at_limit = {**base, field: (stream + "x" * limit)[:limit]}
    args = (at_limit["stream_id"], at_limit["idempotency_key"], at_limit["kind"], text, digest, 1, Timestamp.now())
    assert isinstance(await producer.call("append_sync_events", [args]), ReducerCommitted)


@pytest.mark.parametrize(
    ("name", "payload_text"),
    [
        ("lone surrogate", '{"text": "\\ud800"}'),
        ("nesting 5,000 deep", "[" * 5000 + "]" * 5000),
        ("nesting 100,000 deep", "[" * 100_000 + "]" * 100_000),
        ("nesting one past the limit", "[" * (DEPTH_LIMIT + 1) + "]" * (DEPTH_LIMIT + 1)),
        ("a 5,000-digit integer", "[" + "9" * 5000 + "]"),
    ],
)
async def test_payloads_no_reader_could_parse_are_typed_invalid_events(
    producer: Connection, name: str, payload_text: str
) -> None:
    stream = "payload-" + name.replace(" ", "-").replace(",", "")
    refused_with(
        await producer.call("append_sync_events", [raw_event(stream, 1, payload_text)]), SyncErrorCode.INVALID_EVENT
    )
    single = raw_event(stream, 1, payload_text)
    refused_with(await producer.call("append_sync_event", *single), SyncErrorCode.INVALID_EVENT)
    at_limit = "[" * DEPTH_LIMIT + "]" * DEPTH_LIMIT
    assert isinstance(await producer.call("append_sync_events", [raw_event(stream, 1, at_limit)]), ReducerCommitted)


async def test_an_idempotency_conflict_reveals_nothing_about_another_stream(stack: LocalStack) -> None:
    owner = await session(stack, ("sync.append", "sync.subscribe"), ("idem-secret",))
    intruder = await session(stack, ("sync.append", "sync.subscribe"), ("idem-mine",), OTHER_PRODUCER)
    try:
        assert isinstance(
            await owner.call("append_sync_events", [event("idem-secret", 1, {"s": 1}, key="shared-key")]),
            ReducerCommitted,
        )
        # Keys are scoped per stream: the same key on the intruder's own stream is simply a new event.
        result = await intruder.call("append_sync_events", [event("idem-mine", 1, {"m": 1}, key="shared-key")])
        assert isinstance(result, ReducerCommitted)
        conflict = await intruder.call("append_sync_events", [event("idem-mine", 2, {"m": 2}, key="shared-key")])
        message = refused_with(conflict, SyncErrorCode.IDEMPOTENCY_CONFLICT)
        assert "idem-secret" not in message
        secret_hash = hash_value({"s": 1})[1]
        assert secret_hash not in message and "seq 1" in message  # its own stream's seq only
    finally:
        await owner.close()
        await intruder.close()
