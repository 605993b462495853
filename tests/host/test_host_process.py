"""The `autopilot-sync host` process: starts from the env contract, serves SQL and metrics, refuses bad config."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import aiohttp

from autopilot_sync.devtools.host_tokens import BANNED_SUBJECT, host_signed_token
from autopilot_sync.devtools.processes import start_host


async def test_host_process_serves_calls_sql_and_metrics(tmp_path: Path) -> None:
    host = start_host(tmp_path, module="autopilot_sync.examples.chat", database="chat")
    try:
        async with aiohttp.ClientSession() as http:
            headers = {"Content-Type": "application/json"}
            async with http.post(
                f"{host.url}/v1/database/chat/call/add_person", data='["ada", 36]', headers=headers
            ) as r:
                assert r.status == 200, await r.text()
            async with http.post(f"{host.url}/v1/database/chat/sql", data="SELECT name, age FROM person") as r:
                assert r.status == 200
                (result,) = await r.json()
            assert result["rows"] == [["ada", 36]]
            async with http.get(f"{host.url}/metrics") as r:
                assert r.status == 200
                text = await r.text()
        lines = {line.split(" ")[0]: line.split(" ")[1] for line in text.splitlines() if line and line[0] != "#"}
        assert float(lines["autopilot_sync_host_commits_total"]) >= 1
        assert float(lines['autopilot_sync_host_reducer_calls_total{reducer="add_person",status="committed"}']) == 1
        assert float(lines["autopilot_sync_host_connections"]) == 0
        assert float(lines["autopilot_sync_host_storage_failed"]) == 0
        assert 'autopilot_sync_host_rows_written_total{op="insert",table="person"}' in lines
    finally:
        assert host.stop() == 0


def test_bad_environment_exits_2_naming_the_variable(tmp_path: Path) -> None:
    env = {"AUTOPILOT_SYNC_HOST_LISTEN": "not-an-address", "AUTOPILOT_SYNC_HOST_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "autopilot_sync", "host"],
        env={**__import__("os").environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "AUTOPILOT_SYNC_HOST_LISTEN" in done.stderr


def test_unknown_module_is_a_clear_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "autopilot_sync", "host", "--module", "no.such.module", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "cannot import module 'no.such.module'" in done.stderr


async def test_refused_connection_is_logged_and_counted_by_the_host_process(tmp_path: Path) -> None:
    host = start_host(tmp_path, module="autopilot_sync.examples.chat", database="chat")
    try:
        token = host_signed_token(tmp_path, BANNED_SUBJECT)
        async with aiohttp.ClientSession() as http:
            url = f"{host.url}/v1/database/chat/subscribe"
            async with http.ws_connect(url, protocols=("v2.bsatn.spacetimedb",), params={"token": token}) as ws:
                msg = await ws.receive(timeout=10)
                assert msg.type is aiohttp.WSMsgType.CLOSE and msg.extra == "forbidden: this subject is banned"
            async with http.get(f"{host.url}/metrics") as r:
                text = await r.text()
        assert 'autopilot_sync_host_connections_refused_total{cause="client_connected"} 1.0' in text
        for _ in range(200):  # the child's output is read by a thread: give it a moment
            if "refusing connection" in host.tail(200):
                break
            await asyncio.sleep(0.05)
        assert "forbidden: this subject is banned" in host.tail(200)
    finally:
        assert host.stop() == 0
