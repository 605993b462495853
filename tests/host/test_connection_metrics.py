"""The host counts connections opened, closed and refused (by reason), so a reconnect storm can alert.

A real host process, real WebSocket upgrades over loopback, and the numbers read from its `/metrics` route.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp

from autopilot_sync.devtools.processes import start_host

DATABASE = "chat"


def _value(metrics: str, series: str) -> float:
    found = re.search(rf"^{re.escape(series)} (\S+)$", metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_reconnects_and_refusals_are_counted_by_reason(tmp_path: Path) -> None:
    host = start_host(tmp_path / "host", module="autopilot_sync.examples.chat", database=DATABASE)
    try:
        url = f"{host.url}/v1/database/{DATABASE}/subscribe"
        async with aiohttp.ClientSession() as session:
            for _ in range(3):  # three connects and client-side closes: a small reconnect loop
                async with session.ws_connect(url, protocols=("v2.bsatn.spacetimedb",)) as ws:
                    await ws.receive()  # InitialConnection: the host has counted it as opened
            bad = {"Authorization": "Bearer not-a-token"}
            async with session.get(url, headers={**bad, "Upgrade": "websocket", "Connection": "Upgrade"}) as refused:
                assert refused.status == 401
            for _ in range(100):  # the host counts a close when its handler ends, just after the close handshake
                async with session.get(f"{host.url}/metrics") as response:
                    metrics = await response.text()
                if _value(metrics, 'autopilot_sync_host_connections_closed_total{reason="client"}') >= 3:
                    break
                await asyncio.sleep(0.1)
        assert _value(metrics, "autopilot_sync_host_connections_opened_total") == 3
        assert _value(metrics, 'autopilot_sync_host_connections_closed_total{reason="client"}') == 3
        assert _value(metrics, 'autopilot_sync_host_connections_refused_total{cause="unauthorized"}') == 1
    finally:
        host.stop()
