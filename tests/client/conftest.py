"""Fixtures of the client tests: a real host process per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from client_host_process import HostProcess

from autopilot_sync.devtools.processes import free_port


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[HostProcess]:
    """A running chat host on a free port with a fresh data directory."""
    process = HostProcess(tmp_path / "data", free_port())
    await process.start()
    try:
        yield process
    finally:
        await process.stop()
