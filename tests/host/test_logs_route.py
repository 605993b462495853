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
