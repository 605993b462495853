"""`autopilot-sync control` as a real process: settings from the environment, flags override, the ready line,
and a key rotated underneath it by `autopilot-sync control rotate-key` without a restart."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import aiohttp
from control_helpers import READER, decode_jwt

from autopilot_sync.control.client import fetch_session_token
from autopilot_sync.devtools.processes import free_port, start_service

READ = ("sync.subscribe",)


async def test_process_issues_tokens_and_follows_a_rotation(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    key = tmp_path / "control" / "signing.pem"
    env = {
        "AUTOPILOT_SYNC_CONTROL_PUBLIC_URL": url,
        "AUTOPILOT_SYNC_CONTROL_SIGNING_KEY_PATH": str(key),
        "AUTOPILOT_SYNC_CONTROL_LISTEN": "127.0.0.1:1",  # overridden by the flag below
    }
    control = start_service("control", ["--listen", f"127.0.0.1:{port}"], env=env)
    try:
        assert control.url == url
        first = await fetch_session_token(url, READER, READ, ("*",), None, "cli")
        rotated = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "autopilot_sync", "control", "rotate-key"),
            env={"AUTOPILOT_SYNC_CONTROL_SIGNING_KEY_PATH": str(key), "PATH": ""},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(rotated.communicate(), 60)
        assert rotated.returncode == 0, err.decode()
        second = await fetch_session_token(url, READER, READ, ("*",), None, "cli")
        old_kid, new_kid = decode_jwt(first.token)[0]["kid"], decode_jwt(second.token)[0]["kid"]
        assert old_kid != new_kid
        assert f"signing with {new_kid}" in out.decode()
        async with aiohttp.ClientSession() as http, http.get(f"{url}/.well-known/jwks.json") as response:
            kids = [entry["kid"] for entry in (await response.json())["keys"]]
        assert kids == [new_kid, old_kid]
        async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as response:
            text = await response.text()
        assert 'autopilot_sync_control_tokens_issued_total{client_kind="cli"} 2.0' in text
    finally:
        assert control.stop() == 0, control.tail()


def test_missing_public_url_exits_2_naming_the_variable(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "autopilot_sync", "control"],
        env={"AUTOPILOT_SYNC_CONTROL_SIGNING_KEY_PATH": str(tmp_path / "k.pem"), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "AUTOPILOT_SYNC_CONTROL_PUBLIC_URL: missing" in done.stderr


def test_key_readable_by_others_stops_the_process(tmp_path: Path) -> None:
    key = tmp_path / "signing.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    key.chmod(0o644)
    done = subprocess.run(
        [sys.executable, "-m", "autopilot_sync", "control", "--public-url", "http://127.0.0.1:1"],
        env={"AUTOPILOT_SYNC_CONTROL_SIGNING_KEY_PATH": str(key), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "chmod 600" in done.stderr


def test_a_policy_file_that_does_not_parse_exits_2_with_one_line(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("[[grant]]\nkeys = ['*']\nscopes = ['sync.everything']\nstreams = ['*']\n")
    done = subprocess.run(
        [sys.executable, "-m", "autopilot_sync", "control", "--public-url", f"http://127.0.0.1:{free_port()}"],
        env={
            "AUTOPILOT_SYNC_CONTROL_SIGNING_KEY_PATH": str(tmp_path / "k.pem"),
            "AUTOPILOT_SYNC_CONTROL_POLICY_PATH": str(policy),
            "PATH": "",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "AUTOPILOT_SYNC_CONTROL_POLICY_PATH" in lines[0] and "scopes must be" in lines[0]
