"""The publish routes refuse bad input with a typed, readable 4xx and change nothing (an in-process host)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from autopilot_sync.host.publish_routes import MISSING_TOKEN
from autopilot_sync.host.server import RunningHost, start_host
from autopilot_sync.settings.fields import ListenAddress
from autopilot_sync.settings.host import HostSettings
from autopilot_sync.spacetime.values import Identity

CHAT = {"python_module": "autopilot_sync.examples.chat"}


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[tuple[RunningHost, str]]:
    settings = HostSettings(
        data_dir=tmp_path / "host",
        listen=ListenAddress("127.0.0.1", 0),
        module="autopilot_sync.examples.chat",
        database="chat",
    )
    running = await start_host(settings)
    try:
        async with aiohttp.ClientSession() as http, http.post(running.base_url + "/v1/identity") as minted:
            identity = await minted.json()
        running.engine.owner_identity = Identity.from_hex(identity["identity"])
        yield running, identity["token"]
    finally:
        await running.stop()


@pytest.mark.parametrize(
    ("query", "headers", "body", "status", "text"),
    [
        ("?clear=maybe", {"Content-Type": "application/json"}, b"{}", 400, "clear: provided string was not `true`"),
        (
            "?host_type=Wasm",
            {"Content-Type": "application/wasm"},
            b"\0asm",
            400,
            "WebAssembly modules are not supported",
        ),
        ("?host_type=Python", {}, b"", 400, "unknown variant `Python`, expected `Wasm` or `Js`"),
        ("?policy=Whatever", {}, b"", 400, "unknown variant `Whatever`"),
        ("?policy=BreakClients", {"Content-Type": "application/json"}, b"{}", 400, MISSING_TOKEN),
        ("", {"Content-Type": "application/json"}, b"[1, 2]", 400, '{"python_module": "dotted.path"}'),
        ("", {"Content-Type": "application/json"}, b'{"python_module": "../etc"}', 400, "dotted Python import path"),
        ("", {"Content-Type": "application/json"}, b'{"python_module": "x", "source": "y"}', 400, "python_module"),
        ("", {"Content-Type": "application/json"}, b"\xff\xfe", 400, "python_module"),
        ("", {"Content-Type": "application/json"}, b"[" * 5000, 400, "at most 1024 bytes"),
        ("?host_type=Js", {"Content-Type": "application/javascript"}, b"", 400, "empty module"),
        ("?host_type=Js", {}, b"export default 42;", 400, "Failed to create or update the database"),
    ],
)
async def test_bad_publish_requests_get_a_typed_400_and_change_nothing(
    host: tuple[RunningHost, str], query: str, headers: dict[str, str], body: bytes, status: int, text: str
) -> None:
    running, token = host
    offset_before, module_before = running.engine.offset, running.engine.module
    async with (
        aiohttp.ClientSession() as http,
        http.put(
            f"{running.base_url}/v1/database/chat{query}",
            data=body,
            headers={"Authorization": f"Bearer {token}", **headers},
        ) as response,
    ):
        answer = await response.text()
    assert response.status == status, answer
    assert text in answer
    assert "Traceback" not in answer and "Internal" not in answer
    assert running.engine.module is module_before and running.engine.offset == offset_before


async def test_a_same_schema_publish_swaps_the_code_and_keeps_the_connections(host: tuple[RunningHost, str]) -> None:
    running, token = host
    async with (
        aiohttp.ClientSession() as http,
        http.put(
            f"{running.base_url}/v1/database/chat", json=CHAT, headers={"Authorization": f"Bearer {token}"}
        ) as response,
    ):
        answer = await response.json()
    assert response.status == 200
    assert answer["Success"]["op"] == "updated" and answer["changes"] == []
    assert answer["disconnected_clients"] is False and answer["cleared"] is False
