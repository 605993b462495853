"""The failures a new user meets in the first hour end as one line on stderr that says what to do, and a non-zero exit.

Each test runs the real `autopilot-sync` command as a child process against a real socket (a port held by the
test, or a port nobody listens on) and reads what a person would see: no traceback, one line, the flag to change.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from autopilot_sync.devtools.processes import free_port


def _run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "autopilot_sync", *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (asserting there is exactly one and the exit is non-zero)."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0, (done.returncode, done.stderr)
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port something else is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def _dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_host_on_a_busy_port_names_the_flag_and_variable_to_change(tmp_path: Path, held_port: int) -> None:
    env = {"AUTOPILOT_SYNC_HOST_DATA_DIR": str(tmp_path / "host")}
    line = _one_line(_run("host", "--listen", f"127.0.0.1:{held_port}", env=env))
    assert f"127.0.0.1:{held_port} is already in use" in line
    assert "--listen" in line and "AUTOPILOT_SYNC_HOST_LISTEN" in line


def test_up_on_a_busy_port_names_the_flag_to_change(tmp_path: Path, held_port: int) -> None:
    ports = ["--control-port", str(free_port()), "--runtime-port", str(free_port())]
    ports += ["--exporter-port", str(free_port())]
    done = _run("up", "--headless", "--state-dir", str(tmp_path), "--host-port", str(held_port), *ports)
    line = _one_line(done)
    assert f"port {held_port}" in line and "--host-port" in line


@pytest.mark.parametrize("action", ["list", "replay"])
def test_dead_letters_with_the_runtime_down_point_to_data_dir(action: str) -> None:
    line = _one_line(_run("runtime", "dead-letters", action, "--url", _dead_url()))
    assert "cannot reach" in line and "--data-dir" in line


def test_dead_letters_through_a_missing_producer_socket_name_it(tmp_path: Path) -> None:
    socket = tmp_path / "producer.sock"
    line = _one_line(_run("runtime", "dead-letters", "list", "--socket", str(socket)))
    assert f"cannot reach {socket}" in line and "--data-dir" in line


def test_dead_letters_refuse_a_directory_without_an_outbox_and_create_none(tmp_path: Path) -> None:
    line = _one_line(_run("runtime", "dead-letters", "list", "--data-dir", str(tmp_path)))
    assert "outbox" in line and "AUTOPILOT_SYNC_RUNTIME_DATA_DIR" in line
    assert list(tmp_path.iterdir()) == [], "refusing must not create an empty outbox"


def test_demo_against_a_dead_url_fails_in_one_line() -> None:
    line = _one_line(_run("runtime", "demo", "--url", _dead_url(), "--duration", "5"))
    assert "cannot reach" in line and "--url" in line
    assert "ClientConnectorError" not in line


async def test_demo_without_credentials_fails_in_one_line_naming_socket_and_token() -> None:
    """The runtime here is a stand-in HTTP server answering 401, as a real runtime does over TCP without a token."""
    import asyncio

    from aiohttp import web

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _unauthorized)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        done = await asyncio.to_thread(_run, "runtime", "demo", "--url", f"http://127.0.0.1:{port}", "--duration", "5")
    finally:
        await runner.cleanup()
    line = _one_line(done)
    assert "HTTP 401" in line and "--socket" in line and "--token" in line


async def _unauthorized(_request: object) -> object:
    from aiohttp import web

    return web.json_response({"error": "unauthenticated"}, status=401)
