"""Acknowledged commits survive SIGKILL of a real host process; unacknowledged transactions are never half there."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import aiohttp

from autopilot_sync.devtools.processes import ServiceProcess, free_port, start_host
from autopilot_sync.examples.chat import module
from autopilot_sync.host.engine import EngineConfig, HostEngine

BATCH = 3


async def write_load(base_url: str, worker: int, acked: list[list[str]], attempted: list[list[str]]) -> None:
    """Call add_people in a loop until the host dies; remember what it acknowledged."""
    url = f"{base_url}/v1/database/chat/call/add_people"
    async with aiohttp.ClientSession() as session:
        for i in range(100_000):
            names = [f"w{worker}-{i}-{k}-{random.randrange(1 << 30)}" for k in range(BATCH)]
            attempted.append(names)
            try:
                async with session.post(
                    url, data=json.dumps([names]), headers={"Content-Type": "application/json"}
                ) as r:
                    if r.status == 200:
                        acked.append(names)
                    else:
                        raise AssertionError(f"unexpected status {r.status}: {await r.text()}")
            except (TimeoutError, aiohttp.ClientError):
                return


async def recovered_names(data_dir: Path) -> set[str]:
    """Open the data directory with the real recovery path and list the stored names."""
    engine = HostEngine(module, data_dir, "chat", EngineConfig())
    await engine.start()
    names = {row[1] for row in engine.datastore["person"].rows.values()}
    await engine.stop()
    return names


async def test_acknowledged_commits_survive_sigkill(tmp_path: Path) -> None:
    port = free_port()
    acked: list[list[str]] = []
    attempted: list[list[str]] = []
    for cycle in range(3):
        host: ServiceProcess = start_host(tmp_path, module="autopilot_sync.examples.chat", database="chat", port=port)
        workers = [asyncio.create_task(write_load(host.url, cycle * 10 + w, acked, attempted)) for w in range(8)]
        await asyncio.sleep(0.6 + random.random() * 0.4)
        host.kill()
        await asyncio.gather(*workers)
    assert len(acked) > 20, "the load never got going"
    stored = await recovered_names(tmp_path)
    missing = [name for batch in acked for name in batch if name not in stored]
    assert not missing, f"{len(missing)} acknowledged names lost, e.g. {missing[:3]}"
    for batch in attempted:
        present = [name in stored for name in batch]
        assert all(present) or not any(present), f"transaction half applied: {batch} -> {present}"
    # Whatever was not acknowledged may or may not be there, but nothing unknown is.
    known = {name for batch in attempted for name in batch}
    assert stored <= known
    # The restarted process serves the same data.
    host = start_host(tmp_path, module="autopilot_sync.examples.chat", database="chat", port=port)
    try:
        assert "ready" in host.output[-1] or host.url
    finally:
        host.stop()
