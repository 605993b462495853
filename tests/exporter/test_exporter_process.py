"""The sync metrics exporter against real host, control and runtime processes (issue 17: the host is generic).

Events go in through the runtime's producer API, a reader acknowledges checkpoints over its own WebSocket, and the
exporter — an SDK client subscribed to the sync tables as a read-only observer — shows the gauges move on its own
`/metrics`. An exporter whose identity is not an observer would see only its own rows: it refuses to start (exit 2).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from autopilot_sync.client import ReducerCommitted, ReducerFailed, connect
from autopilot_sync.client.connection import Connection
from autopilot_sync.control.client import fetch_session_token
from autopilot_sync.devtools.processes import free_port, start_host, start_service
from autopilot_sync.devtools.stack import DATABASE, LocalStack
from autopilot_sync.runtime.access import producer_session

RUN = "exp1"
STREAM = f"runtime.run.{RUN}.events"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    running = LocalStack(tmp_path_factory.mktemp("exporter"))
    try:  # a service that fails to start must not leave the ones before it running
        running.start_all()
        running.start_exporter()
        yield running
    finally:
        running.stop_all()


async def append(stack: LocalStack, count: int) -> list[int]:
    events = [{"kind": "run.message.delta", "data": {"n": i}} for i in range(count)]
    async with (
        producer_session(stack.producer_socket) as http,
        http.post(f"{stack.runtime_url}/v1/runs/{RUN}/events", json={"events": events}) as response,
    ):
        body = await response.json()
        assert response.status == 200, body
    return [int(item["seq"]) for item in body["appended"]]


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as response:
        assert response.status == 200
        return await response.text()


def sample(text: str, name: str, stream: str | None = None) -> float | None:
    labels = "" if stream is None else re.escape(f'{{stream_id="{stream}"}}')
    match = re.search(rf"^{re.escape(name)}{labels} (\S+)$", text, flags=re.MULTILINE)
    return None if match is None else float(match.group(1))


async def scrape_until(stack: LocalStack, what: str, check: Callable[[str], bool], within: float = 30.0) -> str:
    deadline = time.monotonic() + within
    text = ""
    while time.monotonic() < deadline:
        text = await scrape(stack.exporter_url)
        if check(text):
            return text
        await asyncio.sleep(0.2)
    raise AssertionError(f"exporter never showed {what}:\n{text}\n{stack.tails()}")


async def ack(reader: Connection, seq: int, within: float = 30.0) -> None:
    """Acknowledge `seq` once the runtime has published it (an ack beyond the head is refused)."""
    deadline = time.monotonic() + within
    while True:
        result = await reader.call("ack_checkpoint", STREAM, seq)
        if isinstance(result, ReducerCommitted):
            return
        assert time.monotonic() < deadline, result
        await asyncio.sleep(0.2)


async def test_exporter_gauges_follow_appends_and_checkpoints_of_a_connected_reader(stack: LocalStack) -> None:
    assert await append(stack, 5) == [1, 2, 3, 4, 5]
    await scrape_until(stack, "a live subscription", lambda t: sample(t, "autopilot_sync_exporter_host_live") == 1)
    user = stack.user_keys[0]  # the runtime makes every demo user a reader of its streams
    token = await fetch_session_token(
        stack.control_url, user, ("sync.subscribe", "sync.checkpoint.write"), None, None, "test"
    )
    reader = await connect(stack.host_url, DATABASE, token=token.token)
    try:
        await ack(reader, 2)
        lag = "autopilot_sync_host_stream_sequence_lag"
        text = await scrape_until(stack, "lag 3", lambda t: sample(t, lag, STREAM) == 3)
        assert sample(text, "autopilot_sync_host_stream_connected_readers", STREAM) == 1
        assert sample(text, "autopilot_sync_host_stream_head_seq", STREAM) == 5
        assert (sample(text, "autopilot_sync_host_streams") or 0) >= 1
        assert await append(stack, 4) == [6, 7, 8, 9]
        await scrape_until(stack, "lag 7 after four more events", lambda t: sample(t, lag, STREAM) == 7)
        await ack(reader, 9)
        await scrape_until(stack, "lag 0 after the reader caught up", lambda t: sample(t, lag, STREAM) == 0)
    finally:
        await reader.close()
    await scrape_until(
        stack,
        "no series without a connected reader",
        lambda t: sample(t, "autopilot_sync_host_stream_head_seq", STREAM) is None,
    )
    async with aiohttp.ClientSession() as http, http.get(f"{stack.exporter_url}/healthz") as response:
        assert response.status == 200 and (await response.json())["status"] == "ok"


async def test_the_exporter_identity_is_refused_owner_reducers_and_still_scrapes(stack: LocalStack) -> None:
    """The exporter reads as a host-level observer, not as the owner: a leaked exporter key changes nothing."""
    await scrape_until(stack, "a live subscription", lambda t: sample(t, "autopilot_sync_exporter_host_live") == 1)
    grant = await fetch_session_token(stack.control_url, stack.exporter_key, ("sync.subscribe",), None, None, "test")
    assert grant.identity == stack.exporter_identity.hex
    leaked = await connect(stack.host_url, DATABASE, token=grant.token)
    try:
        refusals = [
            await leaked.call("set_sync_limits", 1, 1, 1, 1, 1, 1),
            await leaked.call("set_sync_retention", 1, 0, 1_000_000),
            await leaked.call("trim_stream", STREAM, 2),
        ]
        for refused in refusals:
            assert isinstance(refused, ReducerFailed), refused
            assert refused.message.startswith("unauthorized: "), refused
        # It still reads every row, as the gauges need: other identities' checkpoints included.
        answer = await leaked.one_off_query("SELECT * FROM stream_head")
        assert STREAM in {row[0] for row in answer.rows("stream_head")}
    finally:
        await leaked.close()
    assert await append(stack, 1)  # the limits and the floor are unchanged: appends still land
    text = await scrape(stack.exporter_url)
    assert sample(text, "autopilot_sync_exporter_host_live") == 1
    assert (sample(text, "autopilot_sync_host_streams") or 0) >= 1


def test_an_exporter_that_is_not_an_observer_exits_2_naming_the_setting(stack: LocalStack, tmp_path: Path) -> None:
    other = start_service(
        "exporter",
        env={
            "AUTOPILOT_SYNC_EXPORTER_LISTEN": "127.0.0.1:0",
            "AUTOPILOT_SYNC_EXPORTER_CONTROL_URL": stack.control_url,
            "AUTOPILOT_SYNC_EXPORTER_SPACETIME_BASE_URL": stack.host_url,
            "AUTOPILOT_SYNC_EXPORTER_NOSTR_KEY_PATH": str(tmp_path / "nostr.key"),
        },
        wait=False,
    )
    assert other.process.wait(30) == 2, other.tail()
    assert "AUTOPILOT_SYNC_HOST_OBSERVER_IDENTITIES=" in other.tail()


def test_an_exporter_pointed_at_a_database_without_the_sync_tables_exits_2(tmp_path: Path) -> None:
    """Control is not even running (the exporter would start degraded for that); the database is the wrong one."""
    host = start_host(tmp_path / "host", module="autopilot_sync.examples.chat", database="chat")
    try:
        other = start_service(
            "exporter",
            env={
                "AUTOPILOT_SYNC_EXPORTER_LISTEN": "127.0.0.1:0",
                "AUTOPILOT_SYNC_EXPORTER_CONTROL_URL": f"http://127.0.0.1:{free_port()}",
                "AUTOPILOT_SYNC_EXPORTER_SPACETIME_BASE_URL": host.url,
                "AUTOPILOT_SYNC_EXPORTER_DATABASE": "chat",
                "AUTOPILOT_SYNC_EXPORTER_NOSTR_KEY_PATH": str(tmp_path / "nostr.key"),
            },
            wait=False,
        )
        assert other.process.wait(60) == 2, other.tail()
        assert "has no table stream_head" in other.tail() and "does not run the sync module" in other.tail()
    finally:
        host.stop()
