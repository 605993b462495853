"""A TypeScript module's `console.*` and failures reach the module log route, read over a real host process.

The host runs the ABI module (`abi_module.mjs.in`) from a file; the owner is a host-signed subject, so its token reads
`GET /v1/database/:name/logs` as SpacetimeDB's owner would. Marked `node` (needs the pinned library).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from autopilot_sync.client import ReducerCommitted, ReducerFailed, connect
from autopilot_sync.devtools.host_tokens import host_signed_token
from autopilot_sync.devtools.processes import ServiceProcess, start_host
from autopilot_sync.host.auth.tokens import LOCAL_ISSUER
from autopilot_sync.spacetime.identity import identity_from_claims

pytestmark = [pytest.mark.node, pytest.mark.timeout(180)]

DATABASE = "notes"
OWNER = "owner"


@pytest.fixture
def host(abi_module: Path, tmp_path: Path) -> Iterator[tuple[ServiceProcess, str]]:
    data = tmp_path / "data"
    data.mkdir()
    token = host_signed_token(data, OWNER)  # creates the host's signing key first, so the host signs with it too
    env = {"AUTOPILOT_SYNC_HOST_OWNER_IDENTITY": identity_from_claims(LOCAL_ISSUER, OWNER).hex}
    process = start_host(data, module=str(abi_module), database=DATABASE, env=env)
    try:
        yield process, token
    finally:
        process.stop()


async def test_console_lines_and_refusals_of_a_typescript_module_are_in_its_log(
    host: tuple[ServiceProcess, str],
) -> None:
    process, token = host
    async with await connect(process.url, DATABASE) as conn:
        assert isinstance(await conn.call("add_note", "ann", 1, "a1", "t1"), ReducerCommitted)
        assert isinstance(await conn.call("chatty"), ReducerCommitted)
        assert isinstance(await conn.call("refuse"), ReducerFailed)
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{process.url}/v1/database/{DATABASE}/logs", headers={"Authorization": f"Bearer {token}"}) as answer,
    ):
        assert answer.status == 200, await answer.text()
        records = [json.loads(line) for line in (await answer.text()).splitlines()]
    seen = {(r["level"], r.get("function"), r["message"]) for r in records}
    assert ("Info", "add_note", "inserted note 1") in seen, records
    assert {("Error", "chatty", "an error line"), ("Warn", "chatty", "a warning line")} <= seen, records
    assert ("Info", "chatty", "an info line") in seen and ("Debug", "chatty", "a debug line") in seen, records
    assert ("Error", "refuse", "not allowed for this caller") in seen, records
