"""A control service on a real socket (aiohttp AppRunner on 127.0.0.1), started per test."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from control_helpers import DATABASE, PRODUCER, SPACETIME_URL, Control, FakeClock

from autopilot_sync.contract.scopes import PRODUCER_SCOPES, READER_SCOPES
from autopilot_sync.control.api import build_app
from autopilot_sync.control.keys import KeyPaths, KeyStore
from autopilot_sync.control.policy import ANY_KEY, Grant, ScopePolicy
from autopilot_sync.control.request import TtlBounds
from autopilot_sync.control.service import ControlConfig, ControlService
from autopilot_sync.control.tokens import TokenContext

DEFAULT_TTL = TtlBounds(60, 900, 300)
#: Streams any key may hold reader scopes on in these tests (the reader body asks `run:*` and `worker:alpha`).
READER_STREAMS = ("run:*", "worker:*")


def default_policy(allowlist: tuple[str, ...]) -> ScopePolicy:
    """Any key may read `READER_STREAMS`; allowlisted keys may have every scope everywhere."""
    grants = [Grant(frozenset({ANY_KEY}), READER_SCOPES, READER_STREAMS)]
    if allowlist:
        grants.append(Grant(frozenset(k.lower() for k in allowlist), READER_SCOPES | PRODUCER_SCOPES, ("*",)))
    return ScopePolicy(tuple(grants))


@pytest.fixture
async def start_control(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start control services on real sockets; all are stopped at the end of the test."""
    runners: list[web.AppRunner] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(
        *, allowlist: tuple[str, ...] = (PRODUCER.public_key().hex,), ttl: TtlBounds = DEFAULT_TTL
    ) -> Control:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        clock = FakeClock()
        paths = KeyPaths(tmp_path / f"control-{len(runners)}" / "signing.pem")
        keys = KeyStore(paths, ttl.maximum, clock=clock)
        config = ControlConfig(
            public_url=url,
            context=TokenContext(url, DATABASE, SPACETIME_URL),
            ttl=ttl,
            policy=default_policy(allowlist),
        )
        service = ControlService(config, keys)
        runner = web.AppRunner(build_app(service), access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        runners.append(runner)
        session = aiohttp.ClientSession()
        sessions.append(session)
        return Control(url, service, paths, clock, session)

    yield start
    for session in sessions:
        await session.close()
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def control(start_control: Callable[..., Any]) -> Control:
    """One control service with PRODUCER on the append allowlist and the default TTL bounds."""
    started: Control = await start_control()
    return started
