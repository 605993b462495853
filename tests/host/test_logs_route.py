"""The logs route's bounds, in-process over a real socket: a follow ends when its client goes away, and followers
are capped (one more is a 503). The full route over a host process is in tests/dbcli/test_commands.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from autopilot_sync.devtools.host_tokens import host_signed_token
from autopilot_sync.host import logs_route
from autopilot_sync.host.auth.tokens import LOCAL_ISSUER
from autopilot_sync.host.server import RunningHost, start_host
from autopilot_sync.ops.host_publish import ModuleArtifact, delete_database, publish_module
from autopilot_sync.settings.fields import ListenAddress
from autopilot_sync.settings.host import HostSettings
from autopilot_sync.spacetime.identity import identity_from_claims

OWNER = "owner"


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[tuple[RunningHost, str]]:
    data = tmp_path / "host"
    data.mkdir()
    token = host_signed_token(data, OWNER)
    settings = HostSettings(
        data_dir=data,
        listen=ListenAddress("127.0.0.1", 0),
        module="autopilot_sync.examples.chat",
        database="chat",
        owner_identity=identity_from_claims(LOCAL_ISSUER, OWNER).hex,
    )
    running = await start_host(settings)
    try:
        yield running, token
    finally:
        await running.stop()


async def _followers(running: RunningHost, expected: int) -> None:
    log = running.runner.app[logs_route.MODULE_LOG_KEY]
    async with asyncio.timeout(10):
        while log.followers != expected:  # noqa: ASYNC110 (the route changes it: poll)
            await asyncio.sleep(0.05)


async def test_a_follow_streams_new_lines_and_ends_when_the_client_goes_away(
    host: tuple[RunningHost, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    running, token = host
    monkeypatch.setattr(logs_route, "MAX_FOLLOWERS", 1)
    url = f"{running.base_url}/v1/database/chat/logs?follow=true"
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as first:
        answer = await first.get(url, headers=headers)
        assert answer.status == 200 and answer.headers["Content-Type"].startswith("application/x-ndjson")
        await _followers(running, 1)
        async with aiohttp.ClientSession() as second, second.get(url, headers=headers) as refused:
            assert refused.status == 503, await refused.text()
        async with aiohttp.ClientSession() as caller:
            await caller.post(
                f"{running.base_url}/v1/database/chat/call/fail",
                json=["refused while followed"],
                headers={"Content-Type": "application/json"},
            )
        line = await asyncio.wait_for(answer.content.readline(), 10)
        assert json.loads(line)["message"] == "refused while followed"
        answer.close()  # the client goes away
    await _followers(running, 0)


async def test_deleting_the_database_deletes_its_module_logs(host: tuple[RunningHost, str]) -> None:
    """As on SpacetimeDB, a deleted database's logs go with it: a later publish starts with an empty log."""
    running, token = host
    logs_dir = running.engine.data_dir / "logs"
    url = f"{running.base_url}/v1/database/chat"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/call/fail", json=["logged before the delete"]) as answer:
            assert answer.status >= 400
        assert b"logged before the delete" in (logs_dir / "module.log").read_bytes()

        deleted = await delete_database(running.base_url, "chat", token)
        assert deleted.ok, deleted.text
        on_disk = b"".join(path.read_bytes() for path in logs_dir.glob("module.log*"))
        assert b"logged before the delete" not in on_disk

        published = await publish_module(
            running.base_url, "chat", token, ModuleArtifact(python_module="autopilot_sync.examples.chat")
        )
        assert published.ok, published.text
        async with http.post(f"{url}/call/fail", json=["logged after the publish"]) as answer:
            assert answer.status >= 400
        async with http.get(f"{url}/logs", headers={"Authorization": f"Bearer {token}"}) as answer:
            assert answer.status == 200
            messages = [json.loads(line)["message"] for line in (await answer.text()).splitlines()]
    assert "logged after the publish" in messages and "logged before the delete" not in messages
