"""A full disk stops the host from accepting writes (fail-stop) and loses no acknowledged commit.

Uses a real, tiny tmpfs (needs root to mount; skipped otherwise), so the commit log hits a genuine ENOSPC.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from autopilot_sync.devtools.processes import start_host


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(mount_point)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


async def test_full_disk_refuses_writes_and_keeps_acknowledged_commits(tiny_disk: Path, tmp_path: Path) -> None:
    data = tiny_disk / "host"
    host = start_host(data, module="autopilot_sync.examples.chat", database="chat")
    acked: list[str] = []
    refusal = ""
    try:
        async with aiohttp.ClientSession() as http:
            # A live subscriber: once the log fails, answers held for durability can never come, so it is closed.
            socket = await http.ws_connect(
                f"{host.url}/v1/database/chat/subscribe?compression=None", protocols=("v2.bsatn.spacetimedb",)
            )
            url = f"{host.url}/v1/database/chat/call/add_person"
            for i in range(400):
                name = f"p{i}-" + "x" * 4000
                async with http.post(
                    url, data=json.dumps([name, i]), headers={"Content-Type": "application/json"}
                ) as r:
                    if r.status == 200:
                        acked.append(name)
                        continue
                    refusal = f"{r.status} {await r.text()}"
                    break
            assert refusal, "the disk never filled up"
            assert refusal.startswith("530") and "storage failed" in refusal
            # Fail-stop: later writes (and new connections) are refused as unavailable, and the metric says why.
            async with http.post(url, data='["tiny", 1]', headers={"Content-Type": "application/json"}) as r:
                assert r.status == 503 and "storage failed" in await r.text()
            async with http.get(f"{host.url}/metrics") as r:
                assert "autopilot_sync_host_storage_failed 1.0" in await r.text()
            while (frame := await socket.receive(timeout=10)).type is aiohttp.WSMsgType.BINARY:
                pass  # InitialConnection
            assert frame.type is aiohttp.WSMsgType.CLOSE
            assert frame.data == 1011 and "storage failed" in str(frame.extra)
    finally:
        host.kill()
    assert len(acked) > 5
    # Move the data to a roomy disk and restart: every acknowledged commit is there, the torn tail set aside.
    roomy = tmp_path / "roomy"
    shutil.copytree(data, roomy)
    restarted = start_host(roomy, module="autopilot_sync.examples.chat", database="chat")
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{restarted.url}/v1/database/chat/sql", data="SELECT name FROM person") as r,
        ):
            (result,) = await r.json()
        stored = {row[0] for row in result["rows"]}
        assert set(acked) <= stored
    finally:
        restarted.stop()
