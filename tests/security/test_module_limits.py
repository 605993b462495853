"""The sync module's limits are rows of its own database, changed only by the owner (issue 16 item 13, issue 17).

Real host and control processes: the owner calls `set_sync_limits` over HTTP `/call` like an operator, a producer
over the WebSocket is judged by the new numbers at once and after a restart, and anyone else is refused, typed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from module_owner import call_set_sync_limits, make_owner

from autopilot_sync.client import ReducerCommitted, connect
from autopilot_sync.client.connection import Connection
from autopilot_sync.client.results import ReducerFailed
from autopilot_sync.contract.canonical import hash_value
from autopilot_sync.contract.codes import SyncErrorCode, parse_error_code
from autopilot_sync.control.client import fetch_session_token
from autopilot_sync.devtools.stack import DATABASE, LocalStack
from autopilot_sync.module.limits import DEFAULT_LIMITS
from autopilot_sync.nostr.keys import SecretKey
from autopilot_sync.spacetime.values import Timestamp

OWNER = SecretKey.generate()


@pytest.fixture
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    running = LocalStack(tmp_path_factory.mktemp("module-limits"))
    make_owner(running, OWNER)
    try:  # a service that fails to start must not leave the ones before it running
        running.start_all(runtime=False)
        yield running
    finally:
        running.stop_all()


async def producer(stack: LocalStack) -> Connection:
    token = await fetch_session_token(
        stack.control_url, stack.producer_key, ("sync.append", "sync.subscribe", "sync.admin"), ("*",), None, "test"
    )
    return await connect(stack.host_url, DATABASE, token=token.token)


def batch(stream: str, first: int, count: int) -> list[tuple[Any, ...]]:
    text, digest = hash_value({"n": 1})
    return [
        (stream, f"{stream}:{seq}", "test", text, digest, seq, Timestamp.now()) for seq in range(first, first + count)
    ]


async def test_the_owner_lowers_a_limit_over_http_and_a_real_client_is_refused_at_the_new_bound(
    stack: LocalStack,
) -> None:
    client = await producer(stack)
    try:
        assert isinstance(await client.call("append_sync_events", batch("lim", 1, 3)), ReducerCommitted)
        status, body = await call_set_sync_limits(stack, OWNER, replace(DEFAULT_LIMITS, max_batch_events=2))
        assert status == 200, body
        refused = await client.call("append_sync_events", batch("lim", 4, 3))
        assert isinstance(refused, ReducerFailed) and refused.code is SyncErrorCode.BATCH_TOO_LARGE, refused
        assert "limit 2" in refused.message
        assert isinstance(await client.call("append_sync_events", batch("lim", 4, 2)), ReducerCommitted)
    finally:
        await client.close()
    assert stack.host is not None
    stack.host.stop(timeout=5)
    stack.start_host()  # the limit is a committed row: it survives a restart
    client = await producer(stack)
    try:
        refused = await client.call("append_sync_events", batch("lim", 6, 3))
        assert isinstance(refused, ReducerFailed) and refused.code is SyncErrorCode.BATCH_TOO_LARGE, refused
    finally:
        await client.close()


async def test_set_sync_limits_from_anyone_but_the_owner_is_refused_with_a_typed_error(stack: LocalStack) -> None:
    tiny = replace(DEFAULT_LIMITS, max_batch_events=1)
    status, body = await call_set_sync_limits(stack, stack.producer_key, tiny)
    assert status == 530 and parse_error_code(body) is SyncErrorCode.UNAUTHORIZED, (status, body)
    client = await producer(stack)  # the producer holds every scope: scopes do not make an owner
    try:
        refused = await client.call("set_sync_limits", *tiny.as_tuple())
        assert isinstance(refused, ReducerFailed) and refused.code is SyncErrorCode.UNAUTHORIZED, refused
        assert isinstance(await client.call("append_sync_events", batch("still", 1, 2)), ReducerCommitted)
    finally:
        await client.close()
    status, body = await call_set_sync_limits(stack, OWNER, replace(DEFAULT_LIMITS, max_kind_bytes=0))
    assert status == 530 and parse_error_code(body) is SyncErrorCode.INVALID_LIMITS, (status, body)
