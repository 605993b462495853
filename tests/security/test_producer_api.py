"""Attacks on the runtime's producer API through real host, control and runtime processes (issue 16 item 10).

Whoever reaches the TCP address must bring a control token with `sync.append` for exactly the streams it writes
(operator routes: `sync.admin`); the mode 0600 Unix socket is the tokenless way in for the runtime's own user.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from autopilot_sync.auth.claims import parse_unverified
from autopilot_sync.control.client import fetch_session_token
from autopilot_sync.control.keys import KeyPaths, load_keyring
from autopilot_sync.devtools.stack import DATABASE, LocalStack
from autopilot_sync.nostr.keys import SecretKey
from autopilot_sync.runtime.access import producer_session

EVENT = {"kind": "run.started", "data": {"model": "m"}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    running = LocalStack(tmp_path_factory.mktemp("producer-api")).start_all()
    try:
        yield running
    finally:
        running.stop_all()


async def call(
    stack: LocalStack, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{stack.runtime_url}{path}", json=body, headers=headers) as response,
    ):
        return response.status, await response.json()


async def token(
    stack: LocalStack, scopes: tuple[str, ...], streams: tuple[str, ...], key: SecretKey | None = None
) -> str:
    session = await fetch_session_token(stack.control_url, key or stack.producer_key, scopes, streams, None, "test")
    return session.token


async def streams_known(stack: LocalStack) -> set[str]:
    async with producer_session(stack.producer_socket) as http, http.get(f"{stack.runtime_url}/v1/streams") as response:
        return {item["stream_id"] for item in (await response.json())["streams"]}


async def test_without_a_token_nothing_but_health_and_metrics_answers_over_tcp(stack: LocalStack) -> None:
    for method, path, body in [
        ("POST", "/v1/runs/anon/events", EVENT),
        ("POST", "/v1/workers/w-anon/lifecycle", {"user_id": "u", "state": "running"}),
        ("GET", "/v1/streams", None),
        ("GET", "/v1/dead-letters", None),
        ("POST", "/v1/dead-letters/replay", {}),
    ]:
        for bad in (None, "not-a-jwt", "a.b.c"):
            status, answer = await call(stack, method, path, body, bad)
            assert (status, answer["error"]) == (401, "unauthenticated"), (path, bad, answer)
    assert (await call(stack, "GET", "/healthz"))[0] == 200
    assert "runtime.run.anon.events" not in await streams_known(stack)


async def test_a_token_the_runtime_cannot_trace_to_control_is_refused(stack: LocalStack) -> None:
    async with aiohttp.ClientSession() as http, http.post(f"{stack.host_url}/v1/identity") as response:
        host_token = (await response.json())["token"]  # valid, but signed by the host, not by control
    status, answer = await call(stack, "POST", "/v1/runs/forged/events", EVENT, host_token)
    assert (status, answer["error"]) == (401, "unauthenticated")
    good = await token(stack, ("sync.append",), ("*",))
    header, claims, _ = good.split(".")
    tampered = f"{header}.{claims[:-4]}AAAA.{good.split('.')[2]}"  # claims edited after signing
    assert (await call(stack, "POST", "/v1/runs/forged/events", EVENT, tampered))[0] == 401
    assert "runtime.run.forged.events" not in await streams_known(stack)


async def test_a_control_signed_token_for_another_database_is_refused(stack: LocalStack) -> None:
    """The host's audience rule: control signs tokens for one database each; another's must not append here."""
    good = await token(stack, ("sync.append",), ("*",))
    _, claims = parse_unverified(good)
    assert DATABASE in claims["aud"]
    keyring = load_keyring(KeyPaths(stack.root / "control" / "signing.pem"), create=False)
    elsewhere = keyring.active.sign({**claims, "aud": ["spacetimedb", "another-database"]})  # control's own key
    status, answer = await call(stack, "POST", "/v1/runs/other-db/events", EVENT, elsewhere)
    assert (status, answer["error"]) == (401, "unauthenticated")
    assert "another-database" in answer["message"] and repr(DATABASE) in answer["message"]
    assert "runtime.run.other-db.events" not in await streams_known(stack)
    status, answer = await call(stack, "POST", "/v1/runs/other-db/events", EVENT, good)
    assert status == 200 and answer["appended"][0]["stream_id"] == "runtime.run.other-db.events"


async def test_a_token_needs_the_append_scope_and_a_streams_claim_covering_every_stream_written(
    stack: LocalStack,
) -> None:
    reader = await token(stack, ("sync.subscribe",), ("*",), SecretKey.generate())
    status, answer = await call(stack, "POST", "/v1/runs/r-read/events", EVENT, reader)
    assert (status, answer["error"]) == (403, "forbidden")

    narrow = await token(stack, ("sync.append",), ("runtime.run.mine.*", "runtime.worker.*"))
    status, answer = await call(stack, "POST", "/v1/runs/theirs/events", EVENT, narrow)
    assert (status, answer["error"]) == (403, "forbidden_stream")
    assert "runtime.run.theirs.events" in answer["message"]
    status, answer = await call(stack, "POST", "/v1/runs/mine/events", EVENT, narrow)
    assert status == 200 and answer["appended"][0]["stream_id"] == "runtime.run.mine.events"
    # A lifecycle snapshot also writes the user's fleet stream, which this token does not cover: nothing is stored.
    snapshot = {"user_id": "u-1", "state": "running"}
    status, answer = await call(stack, "POST", "/v1/workers/w-1/lifecycle", snapshot, narrow)
    assert (status, answer["error"]) == (403, "forbidden_stream")
    assert (await call(stack, "GET", "/v1/streams", None, narrow))[0] == 403  # operator routes need sync.admin

    admin = await token(stack, ("sync.admin", "sync.subscribe"), ("*",))
    status, answer = await call(stack, "GET", "/v1/streams", None, admin)
    assert status == 200
    assert {item["stream_id"] for item in answer["streams"]} >= {"runtime.run.mine.events"}
    assert "runtime.worker.w-1.lifecycle" not in {item["stream_id"] for item in answer["streams"]}


async def test_the_producer_socket_is_private_to_the_runtime_user_and_needs_no_token(stack: LocalStack) -> None:
    mode = os.stat(stack.producer_socket).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    async with (
        producer_session(stack.producer_socket) as http,
        http.post(f"{stack.runtime_url}/v1/runs/local/events", json=EVENT) as response,
    ):
        assert response.status == 200
    assert "runtime.run.local.events" in await streams_known(stack)


def refused_start(stack: LocalStack) -> tuple[int, list[str]]:
    """Start the stack's runtime, which must refuse to start: its exit status and its output lines."""
    process = stack.start_runtime(wait=False)
    code = process.process.wait(60)
    assert process._reader is not None
    process._reader.join(5)  # the whole output is read
    return code, [line for line in process.output if line.strip()]


def test_a_runtime_whose_key_control_refuses_exits_2_with_one_line(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path, control_env={"AUTOPILOT_SYNC_CONTROL_APPEND_ALLOWLIST": ""})
    stack.start_host()
    stack.start_control()
    try:
        code, lines = refused_start(stack)
    finally:
        stack.stop_all()
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("autopilot-sync runtime: cannot start:"), lines
    assert "scope_not_allowed" in lines[0] or "sync.append" in lines[0], lines


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("AUTOPILOT_SYNC_RUNTIME_CONTROL_URL", "ftp://127.0.0.1:1", "AUTOPILOT_SYNC_RUNTIME_CONTROL_URL"),
        ("AUTOPILOT_SYNC_RUNTIME_SPACETIME_BASE_URL", "ws://127.0.0.1:1", "AUTOPILOT_SYNC_RUNTIME_SPACETIME_BASE_URL"),
        ("AUTOPILOT_SYNC_RUNTIME_DATABASE", "no-such-database", "no-such-database"),
    ],
)
def test_a_misconfigured_runtime_exits_2_with_one_line(tmp_path: Path, variable: str, value: str, says: str) -> None:
    stack = LocalStack(tmp_path, runtime_env={variable: value})
    stack.start_host()
    stack.start_control()
    try:
        code, lines = refused_start(stack)
    finally:
        stack.stop_all()
    assert code == 2, lines
    assert len(lines) == 1 and says in lines[0], lines


async def test_an_unreachable_host_starts_the_runtime_degraded_and_appends_still_land(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path, runtime_env={"AUTOPILOT_SYNC_RUNTIME_HEALTH_CHECK_SECONDS": "1"})
    stack.start_control()
    stack.start_runtime()  # the host is not running yet
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{stack.runtime_url}/healthz") as response:
                health = await response.json()
            assert response.status == 200 and health["status"] == "degraded", health
            assert health["dependencies"]["host"]["state"] == "unreachable"
            assert health["dependencies"]["control"]["state"] == "up"
            async with http.get(f"{stack.runtime_url}/metrics") as response:
                assert 'autopilot_sync_runtime_dependency_up{dependency="host"} 0.0' in await response.text()
        async with (
            producer_session(stack.producer_socket) as http,
            http.post(f"{stack.runtime_url}/v1/runs/offline/events", json=EVENT) as response,
        ):
            assert response.status == 200  # durable in the outbox, published once the host is up
        stack.start_host()
        stack.trust_control()  # a fresh database: its owner names control before anything is published
        async with aiohttp.ClientSession() as http, asyncio.timeout(30):
            while True:
                async with http.get(f"{stack.runtime_url}/healthz") as response:
                    if (await response.json())["status"] == "ok":
                        break
                await asyncio.sleep(0.2)
        async with producer_session(stack.producer_socket) as http, asyncio.timeout(30):
            while True:
                async with http.get(f"{stack.runtime_url}/v1/streams") as response:
                    streams = {item["stream_id"]: item for item in (await response.json())["streams"]}
                if streams["runtime.run.offline.events"]["published_seq"] == 1:
                    break
                await asyncio.sleep(0.2)
    finally:
        stack.stop_all()


async def test_host_and_control_answer_their_health_routes(stack: LocalStack) -> None:
    async with aiohttp.ClientSession() as http:
        for url in (stack.host_url, stack.control_url, stack.runtime_url):
            async with http.get(f"{url}/healthz") as response:
                assert response.status == 200
                assert (await response.json())["status"] == "ok"
