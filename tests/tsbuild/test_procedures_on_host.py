"""Procedures of a TypeScript module (issue 18 item 1), built by `autopilot-sync build` and served by a real host.

`procedures_module/` declares procedures with the official library: a pure one (`add`), one reading its caller
(`whoami`), ones opening transactions with `ctx.withTx` (`bump`, `bump_twice`), one whose transaction throws
(`write_then_throw`), one asking for outbound HTTP (`fetch_url`, refused by this host) and one that never returns
(`spin`). Real processes throughout: the host CLI, the `autopilot-sync call` CLI, our client over the WebSocket, and
HTTP. The promises: a procedure's value comes back; its transactions commit like a reducer's (subscribers see them,
and an answer never reveals one that a kill could lose); every failure is a typed answer and the host keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from tsbuild_helpers import CHAT, HostProcess, run_build

from autopilot_sync.client import ProcedureFailed, ProcedureReturned, connect

pytestmark = [pytest.mark.node, pytest.mark.timeout(240)]

PROJECT = Path(__file__).with_name("procedures_module")
DATABASE = "procs"


@pytest.fixture(scope="module")
def built_procedures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """procedures_module built once per test module by `autopilot-sync build` (node_modules from modules/chat)."""
    if shutil.which("node") is None or not (CHAT / "node_modules" / ".bin" / "tsc").exists():
        pytest.skip("node or modules/chat/node_modules missing (./dev test installs them)")
    project = tmp_path_factory.mktemp("procedures") / "project"
    shutil.copytree(PROJECT, project)
    (project / "node_modules").symlink_to(CHAT / "node_modules", target_is_directory=True)
    out = project.parent / "procedures.js"
    done = run_build("--project-path", str(project), "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture
def host(built_procedures: Path, tmp_path: Path) -> Iterator[HostProcess]:
    running = HostProcess(built_procedures, tmp_path / "data", DATABASE)
    try:
        yield running
    finally:
        running.stop()


async def _post(url: str, function: str, args: list[object]) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/v1/database/{DATABASE}/call/{function}", json=args) as answer,
    ):
        return answer.status, await answer.text()


async def _sql(url: str, query: str) -> list[list[object]]:
    async with aiohttp.ClientSession() as http, http.post(f"{url}/v1/database/{DATABASE}/sql", data=query) as answer:
        assert answer.status == 200, await answer.text()
        rows: list[list[object]] = (await answer.json())[0]["rows"]
        return rows


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPILOT_SYNC_")}
    return subprocess.run(
        [sys.executable, "-m", "autopilot_sync", *args], capture_output=True, text=True, timeout=60, env=env
    )


async def test_a_procedure_returns_its_value_over_http_and_the_cli(host: HostProcess) -> None:
    assert await _post(host.url, "add", [2, 3]) == (200, "5")
    status, text = await _post(host.url, "whoami", [])
    assert status == 200 and len(json.loads(text)) == 64, text
    assert await _post(host.url, "add", [1]) == (
        400,
        "invalid arguments for procedure add: at $: expected 2 elements: [a, b], got array of 1",
    )
    assert (await _post(host.url, "no_such_thing", []))[0] == 404
    done = _cli("call", DATABASE, "add", "40", "2", "--server", host.url, "--anonymous")
    assert done.returncode == 0 and done.stdout.strip() == "42", done.stdout + done.stderr


async def test_our_client_calls_procedures_over_the_websocket_and_sees_their_writes_first(host: HostProcess) -> None:
    async with await connect(host.url, DATABASE) as conn:
        await (await conn.subscribe(["SELECT * FROM counter"])).applied()
        added = await conn.call_procedure("add", 2, 3)
        assert added == ProcedureReturned("add", added.timestamp, 5, (5).to_bytes(4, "little"))
        who = await conn.call_procedure("whoami")
        assert isinstance(who, ProcedureReturned) and who.value == conn.identity.hex
        bumped = await conn.call_procedure("bump", "b", 4)
        assert isinstance(bumped, ProcedureReturned) and bumped.value == 4
        # The transaction's update reached this client before the procedure's answer (commit order, then answer).
        assert [(r.name, r.value) for r in conn.cache.rows("counter")] == [("b", 4)]
        failed = await conn.call_procedure("write_then_throw", "y")
        assert failed == ProcedureFailed("write_then_throw", failed.timestamp, "refused after writing y")
        assert [r.name for r in conn.cache.rows("counter")] == ["b"]


async def test_a_procedures_transactions_reach_subscribers_and_survive_a_kill(
    host: HostProcess, built_procedures: Path, tmp_path: Path
) -> None:
    async with await connect(host.url, DATABASE) as conn:
        seen: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        conn.cache.on_insert("counter", lambda row: seen.put_nowait((row.name, row.value)))
        conn.cache.on_update("counter", lambda _old, row: seen.put_nowait((row.name, row.value)))
        await (await conn.subscribe(["SELECT * FROM counter"])).applied()
        assert await _post(host.url, "bump", ["a", 5]) == (200, "5")
        async with asyncio.timeout(10):
            assert await seen.get() == ("a", 5)
        assert await _post(host.url, "bump_twice", ["a"]) == (200, "7")  # two commits, each its own transaction
        async with asyncio.timeout(10):
            assert [await seen.get(), await seen.get()] == [("a", 6), ("a", 7)]
        status, text = await _post(host.url, "write_then_throw", ["x"])
        assert (status, text) == (530, "refused after writing x"), "the throwing transaction rolled back"
    # Answered means durable: SIGKILL now, and the restarted host has every committed transaction.
    host.process.kill()
    host.process.wait()
    again = HostProcess(built_procedures, tmp_path / "data", DATABASE)
    try:
        assert await _sql(again.url, "SELECT * FROM counter") == [["a", 7]]
    finally:
        again.stop()


async def test_every_procedure_failure_is_a_typed_answer_and_the_host_keeps_serving(host: HostProcess) -> None:
    status, text = await _post(host.url, "fetch_url", ["http://169.254.169.254/latest/meta-data/"])
    assert status == 530 and text.startswith("HttpError:") and "no HTTP requests" in text, text
    status, text = await _post(host.url, "spin", [])
    assert status == 530 and "time limit" in text, text
    assert await _post(host.url, "add", [20, 22]) == (200, "42"), "a fresh runner serves the next call"
