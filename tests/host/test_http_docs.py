"""docs/host-http.md's route table is the host's: the same routes, and each documented success status is real.

A doc that says a route answers 501 while it answers 200 sends users to the wrong place; the table is parsed here
and compared with the routes the application registers and with what a running host answers.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from autopilot_sync.host.server import RunningHost, start_host
from autopilot_sync.settings.fields import ListenAddress
from autopilot_sync.settings.host import HostSettings
from autopilot_sync.spacetime.values import Identity

DOC = Path(__file__).resolve().parents[2] / "docs" / "host-http.md"
_ROW = re.compile(r"^\| `(?P<method>[A-Z]+) (?P<path>/[^`?]*)(\?[^`]*)?` \| (?P<status>\d{3})\b")


def documented_routes() -> dict[tuple[str, str], int]:
    """`(method, path with :params) -> success status` from the Routes table."""
    routes: dict[tuple[str, str], int] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = _ROW.match(line)
        if match:
            routes[(match["method"], match["path"])] = int(match["status"])
    return routes


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[RunningHost]:
    settings = HostSettings(
        data_dir=tmp_path / "host",
        listen=ListenAddress("127.0.0.1", 0),
        module="autopilot_sync.examples.chat",
        database="chat",
    )
    running = await start_host(settings)
    try:
        yield running
    finally:
        await running.stop()


def registered_routes(host: RunningHost) -> set[tuple[str, str]]:
    found = set()
    for route in host.runner.app.router.routes():
        if route.method == "HEAD":
            continue  # aiohttp adds HEAD beside every GET
        path = re.sub(r"\{(\w+)\}", r":\1", route.resource.canonical if route.resource else "")
        found.add((route.method, path))
    return found


async def test_documented_routes_are_exactly_the_registered_ones(host: RunningHost) -> None:
    assert set(documented_routes()) == registered_routes(host)


_CHAT = b'{"python_module": "autopilot_sync.examples.chat"}'

#: One well-formed request per documented route: (extra path suffix, headers, body).
REQUESTS: dict[tuple[str, str], tuple[str, dict[str, str], bytes | None]] = {
    ("POST", "/v1/identity"): ("", {}, None),
    ("GET", "/v1/identity/public-key"): ("", {}, None),
    ("POST", "/v1/identity/websocket-token"): ("", {}, None),  # the token is added below
    ("GET", "/v1/ping"): ("", {}, None),
    ("POST", "/v1/database/:name/call/:reducer"): ("", {"Content-Type": "application/json"}, b'["ada", 36]'),
    ("POST", "/v1/database/:name/sql"): ("", {}, b"SELECT * FROM person"),
    ("GET", "/v1/database/:name/schema"): ("?version=9", {}, None),
    ("GET", "/v1/database/:name/logs"): ("?num_lines=10", {}, None),  # the owner's (the caller is made the owner)
    ("GET", "/v1/database/:name/subscribe"): (
        "",
        {
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Protocol": "v2.bsatn.spacetimedb",
        },
        None,
    ),
    ("GET", "/metrics"): ("", {}, None),
    ("GET", "/healthz"): ("", {}, None),
    # The publish routes, in the table's order: update, delete, create again (the caller is made the owner below).
    ("POST", "/v1/database/:name/pre_publish"): ("", {"Content-Type": "application/json"}, _CHAT),
    ("PUT", "/v1/database/:name"): ("", {"Content-Type": "application/json"}, _CHAT),
    ("DELETE", "/v1/database/:name"): ("", {}, None),
    ("POST", "/v1/database"): ("", {"Content-Type": "application/json"}, _CHAT),
}


async def test_each_documented_success_status_is_what_the_host_answers(host: RunningHost) -> None:
    routes = documented_routes()
    assert set(REQUESTS) == set(routes), "give every documented route a request here"
    async with aiohttp.ClientSession() as session:
        async with session.post(host.base_url + "/v1/identity") as minted:
            identity = await minted.json()
        token = identity["token"]
        host.engine.owner_identity = Identity.from_hex(identity["identity"])  # may publish, delete and create
        for (method, path), status in routes.items():
            suffix, headers, body = REQUESTS[(method, path)]
            url = host.base_url + path.replace(":name", host.engine.database_name).replace(":reducer", "add_person")
            sent = {"Authorization": f"Bearer {token}", **headers}
            async with session.request(method, url + suffix, headers=sent, data=body) as response:
                assert response.status == status, f"{method} {path}: documented {status}, got {response.status}"
