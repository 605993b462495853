"""Real host + real control + real runtime: what producers were told is exactly what the host holds.

History-style: the producer records every acknowledged `(stream, seq)`; a request whose answer was lost is retried
with the same request id until acknowledged, so the acknowledged set is exactly what the runtime stored. After
SIGKILLs of the runtime (mid-drain) and of the host (mid-commit), the host's streams must equal those histories:
in order, no gap, no duplicate, same payload hashes.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from runtime_processes import System, host_events

from autopilot_sync.runtime.access import producer_session
from autopilot_sync.runtime.outbox import Outbox
from autopilot_sync.runtime.store import OUTBOX_FILE

RUNS = ("r-a", "r-b", "r-c")


class Producer:
    """Appends run events and worker snapshots through the HTTP API, retrying each request until acknowledged."""

    def __init__(self, url: str, socket: Path) -> None:
        self.url = url
        self.socket = socket
        self.acknowledged: dict[str, list[int]] = {}
        self.requests = itertools.count()

    async def append(self, http: aiohttp.ClientSession, path: str, body: dict[str, object]) -> None:
        body = {**body, "request_id": f"req-{next(self.requests)}"}
        while True:
            try:
                async with http.post(f"{self.url}{path}", json=body) as response:
                    if response.status == 200:
                        for item in (await response.json())["appended"]:
                            self.acknowledged.setdefault(item["stream_id"], []).append(item["seq"])
                        return
                    assert response.status >= 500, await response.text()
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.05)

    async def run(self, count: int, pause: float = 0.0) -> None:
        timeout = aiohttp.ClientTimeout(total=5)
        async with producer_session(self.socket, timeout=timeout) as http:
            for n in range(count):
                run = RUNS[n % len(RUNS)]
                await self.append(http, f"/v1/runs/{run}/events", {"kind": "run.message.delta", "data": {"n": n}})
                if n % 10 == 0:
                    state = "running" if n % 20 == 0 else "stopping"
                    await self.append(http, "/v1/workers/w-1/lifecycle", {"user_id": "u-1", "state": state})
                if pause:
                    await asyncio.sleep(pause)


async def wait_published(system: System, seconds: float = 60.0) -> None:
    async with producer_session(system.producer_socket) as http, asyncio.timeout(seconds):
        while True:
            try:
                async with http.get(f"{system.runtime_url}/v1/streams") as response:
                    streams = (await response.json())["streams"]
                if streams and all(s["pending"] == 0 and s["published_seq"] == s["head_seq"] for s in streams):
                    assert not any(s["blocked"] for s in streams)
                    return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


async def assert_host_equals_acknowledged(system: System, producer: Producer) -> None:
    outbox = Outbox(system.root / "runtime" / OUTBOX_FILE)
    try:
        stored = {stream: outbox.events(stream) for stream in producer.acknowledged}
    finally:
        outbox.close()
    on_host = await host_events(system, list(producer.acknowledged))
    for stream, seqs in producer.acknowledged.items():
        assert sorted(seqs) == list(range(1, len(seqs) + 1)), f"{stream}: acknowledged seqs have a gap"
        expected = [(e.seq, e.idempotency_key, e.kind, e.payload_hash) for e in stored[stream]]
        assert [e.seq for e in stored[stream]] == sorted(seqs), f"{stream}: runtime stored more than it acknowledged"
        assert on_host[stream] == expected, f"{stream}: host differs from what the runtime acknowledged"


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    services = System(tmp_path)
    yield services
    services.stop_all()


async def test_appends_reach_the_host_in_order(system: System) -> None:
    system.start_all()
    producer = Producer(system.runtime_url, system.producer_socket)
    await producer.run(40)
    await wait_published(system)
    await assert_host_equals_acknowledged(system, producer)
    assert set(producer.acknowledged) == {
        *(f"runtime.run.{run}.events" for run in RUNS),
        "runtime.worker.w-1.lifecycle",
        "runtime.fleet.user.u-1.workers",
    }
    async with aiohttp.ClientSession() as http, http.get(f"{system.runtime_url}/metrics") as response:
        metrics = await response.text()
    assert 'autopilot_sync_runtime_events_published_total{family="run"} 40.0' in metrics


async def test_acknowledged_events_survive_sigkill_of_runtime_and_host(system: System) -> None:
    system.runtime_env["AUTOPILOT_SYNC_RUNTIME_PUBLISH_BATCH_SIZE"] = "7"
    system.start_all()
    producer = Producer(system.runtime_url, system.producer_socket)
    producing = asyncio.create_task(producer.run(240, pause=0.005))
    try:
        for round_number in range(3):
            await asyncio.sleep(0.6)
            assert system.runtime is not None and system.host is not None
            system.runtime.kill()  # mid-drain: the producer keeps appending, the backlog grows
            await asyncio.to_thread(system.start_runtime)
            await asyncio.sleep(0.6)
            system.host.kill()  # mid-commit: batches are in flight
            await asyncio.sleep(0.2 * round_number)
            await asyncio.to_thread(system.start_host)
        await asyncio.wait_for(producing, 120)
    except BaseException:
        producing.cancel()
        print(system.tails())
        raise
    await wait_published(system, seconds=90)
    await assert_host_equals_acknowledged(system, producer)


async def test_demo_shows_live_traffic_and_operator_commands_answer(system: System) -> None:
    system.start_all()
    demo = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "autopilot_sync", "runtime", "demo", "--url", system.runtime_url),
        *("--socket", str(system.producer_socket)),
        *("--rate", "200", "--runs", "3", "--workers", "2", "--duration", "20", "--seed", "1"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(demo.communicate(), 60)
    text = out.decode()
    assert demo.returncode == 0, text
    assert "appended=" in text and "outbox_depth=" in text
    await wait_published(system)
    listing = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "autopilot_sync", "runtime", "dead-letters", "list", "--url", system.runtime_url),
        *("--socket", str(system.producer_socket)),
        stdout=asyncio.subprocess.PIPE,
    )
    listed, _ = await asyncio.wait_for(listing.communicate(), 60)
    assert listing.returncode == 0 and "no dead letters" in listed.decode()
