"""Real host + real control + real runtime: concurrent streams' batches go to the host joined in one call.

The runtime's own metrics (`/metrics`) count the calls it sent; the host's rows (read as a subscriber) are what
counts as published. A stream refused inside a combined call must get its own answer (here a dead letter) while
its neighbours commit; a SIGKILL of the runtime while combined calls are in flight must lose and repeat nothing.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from runtime_processes import System, host_events

from autopilot_sync.runtime.access import producer_session
from autopilot_sync.runtime.outbox import Outbox
from autopilot_sync.runtime.store import OUTBOX_FILE


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    services = System(tmp_path)
    yield services
    services.stop_all()


async def append_run_event(http: aiohttp.ClientSession, system: System, run: str, data: dict[str, object]) -> int:
    """One run event through the producer API, retried until the runtime acknowledges it; its seq."""
    async with asyncio.timeout(30):
        while True:
            try:
                body = {"kind": "run.message.delta", "data": data, "request_id": f"{run}-{data['n']}"}
                async with http.post(f"{system.runtime_url}/v1/runs/{run}/events", json=body) as response:
                    if response.status == 200:
                        (item,) = (await response.json())["appended"]
                        return int(item["seq"])
                    assert response.status >= 500, await response.text()
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.05)


async def runtime_json(system: System, path: str) -> dict[str, object]:
    async with producer_session(system.producer_socket) as http, http.get(f"{system.runtime_url}{path}") as response:
        data: dict[str, object] = await response.json()
        return data


async def metric(system: System, name: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(f"{system.runtime_url}/metrics") as response:
        text = await response.text()
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def combined_calls(system: System) -> float:
    """Calls the runtime sent with more than one stream in them, from its `call_streams` histogram."""
    calls = await metric(system, "autopilot_sync_runtime_publish_call_streams_count")
    return calls - await metric(system, 'autopilot_sync_runtime_publish_call_streams_bucket{le="1.0"}')


async def settled(system: System, seconds: float = 60.0) -> list[dict[str, object]]:
    """Wait until every stream is published or blocked on a dead letter; the streams."""
    async with asyncio.timeout(seconds):
        while True:
            try:
                streams = (await runtime_json(system, "/v1/streams"))["streams"]
                assert isinstance(streams, list)
                if streams and all(s["pending"] == 0 or s["blocked"] for s in streams):
                    return streams
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


def outbox_rows(system: System, streams: list[str]) -> dict[str, list[tuple[object, ...]]]:
    outbox = Outbox(system.root / "runtime" / OUTBOX_FILE)
    try:
        return {s: [(e.seq, e.idempotency_key, e.kind, e.payload_hash) for e in outbox.events(s)] for s in streams}
    finally:
        outbox.close()


async def test_a_stream_refused_inside_a_combined_call_is_dead_lettered_while_its_neighbours_commit(
    system: System,
) -> None:
    system.start_all()
    runs = [f"n{i:02d}" for i in range(30)]
    async with producer_session(system.producer_socket) as http:  # a first life publishes seq 1 of every run
        await asyncio.gather(*(append_run_event(http, system, run, {"n": 0}) for run in runs))
        assert await append_run_event(http, system, "n15-bad", {"n": 0, "life": "first"}) == 1
    await settled(system)
    # the runtime loses its outbox: it appends seq 1 of every run again, the same payload (a duplicate, success)
    # except for run n15-bad, whose seq 1 carries another payload under the same key (idempotency_conflict); the run
    # sorts amid its neighbours, whose drains start in stream order, so it is never alone in a call
    assert system.runtime is not None and system.host is not None
    system.runtime.kill()
    for lost in (system.root / "runtime").glob(f"{OUTBOX_FILE}*"):  # the outbox and its journal, not the key
        lost.unlink()
    system.host.kill()  # so the next events wait in the outbox and go out together once the host is back
    await asyncio.to_thread(system.start_runtime)
    async with producer_session(system.producer_socket) as http:
        for n in range(2):
            await asyncio.gather(*(append_run_event(http, system, run, {"n": n}) for run in runs))
        assert await append_run_event(http, system, "n15-bad", {"n": 0, "life": "second"}) == 1
    system.runtime.kill()
    await asyncio.to_thread(system.start_host)
    await asyncio.to_thread(system.start_runtime)  # its drains all start at once on the backlog
    streams = await settled(system)
    dead = await runtime_json(system, "/v1/dead-letters")
    letters = dead["dead_letters"]
    assert isinstance(letters, list)
    assert [(d["stream_id"], d["seq"], d["retry_class"]) for d in letters] == [
        ("runtime.run.n15-bad.events", 1, "permanent")
    ]
    assert "idempotency_conflict" in str(letters[0]["reason"])
    neighbours = [f"runtime.run.{run}.events" for run in runs]
    assert {s["stream_id"] for s in streams if s["blocked"]} == {"runtime.run.n15-bad.events"}
    on_host = await host_events(system, neighbours)
    stored = outbox_rows(system, neighbours)
    assert all(len(rows) == 2 for rows in stored.values())
    assert on_host == stored
    calls = await metric(system, "autopilot_sync_runtime_publish_call_events_count")
    assert calls > 0 and await combined_calls(system) > 0  # the rest: the split's own calls
    assert await metric(system, "autopilot_sync_runtime_publish_call_splits_total") >= 1


async def test_sigkill_of_the_runtime_during_combined_calls_loses_and_repeats_nothing(system: System) -> None:
    system.runtime_env["AUTOPILOT_SYNC_RUNTIME_PUBLISH_BATCH_SIZE"] = "2"  # each stream drains in several calls
    system.start_all()
    runs = [f"k{i:02d}" for i in range(40)]
    acknowledged: dict[str, list[int]] = {}

    async def produce(run: str, first: int) -> None:
        async with producer_session(system.producer_socket) as http:
            for n in range(first, first + 6):
                seq = await append_run_event(http, system, run, {"n": n})
                acknowledged.setdefault(f"runtime.run.{run}.events", []).append(seq)

    assert system.runtime is not None and system.host is not None
    for first in (0, 6):
        system.host.kill()  # the events wait in the outbox, so every stream has a backlog when the host is back
        await asyncio.gather(*(produce(run, first) for run in runs))
        system.runtime.kill()
        await asyncio.to_thread(system.start_host)
        await asyncio.to_thread(system.start_runtime)  # every stream's drain starts at once
        async with asyncio.timeout(60):  # until a call carrying several streams went out
            while await combined_calls(system) == 0:  # noqa: ASYNC110 - polling the runtime's metrics is the point
                await asyncio.sleep(0.01)
        system.runtime.kill()  # combined calls in flight: their answers are lost with the process
        await asyncio.to_thread(system.start_runtime)
    streams = await settled(system, 90)
    assert not any(s["blocked"] for s in streams)
    names = sorted(acknowledged)
    stored = outbox_rows(system, names)
    on_host = await host_events(system, names)
    for stream in names:
        assert sorted(acknowledged[stream]) == list(range(1, 13)), stream
        assert [row[0] for row in stored[stream]] == list(range(1, 13)), stream
        assert on_host[stream] == stored[stream], f"{stream}: host differs from what the runtime acknowledged"
