"""`autopilot-sync runtime demo`: simulated agent runs and worker lifecycles, appended through the runtime's own API.

It is a producer like any other (HTTP to the runtime over its producer socket or with a token, nothing in-process),
so the quick start shows the real path: HTTP append → outbox → publisher → host → subscribers. Progress lines report
what the runtime says about itself (appended by this demo, published, outbox depth), read from `GET /v1/streams`.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from autopilot_sync.runtime.access import producer_session


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """What to simulate and how fast; `runs` 0 means runs without end, `duration` 0 means until stopped."""

    url: str
    rate: float = 20.0
    runs: int = 10
    duration: float = 30.0
    workers: int = 3
    user_id: str = "demo-user"
    prefix: str = "demo"
    deltas_per_run: int = 8
    progress_every: float = 1.0
    seed: int | None = None
    socket_path: Path | None = None
    """The runtime's producer socket; without it `token` (from control, `sync.append` + `sync.admin`) is sent."""
    token: str | None = None


@dataclass(frozen=True, slots=True)
class DemoAppend:
    """One request the demo sends: its path and JSON body, and how many events it appends."""

    path: str
    body: dict[str, Any]
    events: int


@dataclass(frozen=True, slots=True)
class DemoProgress:
    """One progress line's numbers."""

    elapsed: float
    appended: int
    published: int
    outbox_depth: int
    failed_requests: int

    def line(self) -> str:
        """The text printed for people."""
        return (
            f"t={self.elapsed:6.1f}s appended={self.appended} published={self.published} "
            f"outbox_depth={self.outbox_depth} failed_requests={self.failed_requests}"
        )


def workload(config: DemoConfig) -> Iterator[DemoAppend]:
    """Workers start, runs go started → deltas → tool call → finished on them, then the workers stop."""
    rng = random.Random(config.seed)
    workers = [f"{config.prefix}-worker-{index}" for index in range(max(1, config.workers))]
    for worker in workers:
        yield _snapshot(config, worker, "starting")
        yield _snapshot(config, worker, "running")
    for number in range(config.runs) if config.runs > 0 else itertools.count():
        run_id = f"{config.prefix}-run-{number}"
        worker = workers[number % len(workers)]
        path = f"/v1/runs/{run_id}/events"
        yield DemoAppend(path, {"kind": "run.started", "data": {"worker_id": worker, "model": "demo"}}, 1)
        for index in range(config.deltas_per_run):
            text = rng.choice(["Looking", " at", " the", " logs", ".", " Found", " it", "!"])
            yield DemoAppend(path, {"kind": "run.message.delta", "data": {"index": index, "delta": text}}, 1)
            if index == config.deltas_per_run // 2:
                call = {"tool": "grep", "args": {"pattern": "error"}, "call_id": f"{run_id}-c{index}"}
                yield DemoAppend(path, {"kind": "run.tool.call", "data": call}, 1)
        outcome = "cancelled" if rng.random() < 0.1 else "succeeded"
        if outcome == "cancelled":
            yield DemoAppend(path, {"kind": "run.cancel_requested", "data": {"by": config.user_id}}, 1)
        yield DemoAppend(path, {"kind": "run.finished", "data": {"outcome": outcome}}, 1)
    for worker in workers:
        yield _snapshot(config, worker, "stopping")
        yield _snapshot(config, worker, "stopped")


def _snapshot(config: DemoConfig, worker: str, state: str) -> DemoAppend:
    body = {"user_id": config.user_id, "state": state, "detail": {"host": "demo", "slots": 2}}
    return DemoAppend(f"/v1/workers/{worker}/lifecycle", body, 2)


async def _status(session: aiohttp.ClientSession, url: str) -> tuple[int, int]:
    async with session.get(f"{url}/v1/streams") as response:
        body = await response.json()
    streams = body.get("streams", [])
    return sum(s["published_seq"] for s in streams), sum(s["pending"] for s in streams)


async def run_demo(config: DemoConfig, echo: Callable[[str], None]) -> DemoProgress:
    """Append the workload at `config.rate` events/s until it ends or `duration` passes; report progress.

    Raises `aiohttp.ClientConnectorError` when the runtime cannot be reached at all and `aiohttp.ClientResponseError`
    when it refuses the demo's credentials (401/403): either way every later event would fail the same way. Other
    failed appends are counted and reported.
    """
    url = config.url.rstrip("/")
    started = time.monotonic()
    session_tag = time.time_ns()
    appended = 0
    failed = 0
    next_report = started
    headers = {"Authorization": f"Bearer {config.token}"} if config.token else None
    async with producer_session(
        config.socket_path, timeout=aiohttp.ClientTimeout(total=30), headers=headers
    ) as session:
        for number, item in zip(itertools.count(), workload(config), strict=False):
            now = time.monotonic()
            if config.duration > 0 and now - started >= config.duration:
                break
            due = started + appended / config.rate
            if due > now:
                await asyncio.sleep(due - now)
            body = {**item.body, "request_id": f"{config.prefix}-{session_tag}-{number}"}
            try:
                async with session.post(f"{url}{item.path}", json=body) as response:
                    if response.status in (401, 403):
                        response.raise_for_status()  # no right to append: every next event would be refused too
                    if response.status == 200:
                        appended += item.events
                    else:
                        failed += 1
                        echo(f"append refused: HTTP {response.status} {await response.text()}")
            except (aiohttp.ClientConnectorError, aiohttp.ClientResponseError):
                raise  # nothing listens at the URL: retrying every event would only hide that (the CLI says so)
            except (aiohttp.ClientError, TimeoutError) as exc:
                failed += 1
                echo(f"append failed: {type(exc).__name__}: {exc}")
            if time.monotonic() >= next_report:
                next_report += config.progress_every
                echo(await _progress(session, url, started, appended, failed))
        final = await _progress_value(session, url, started, appended, failed)
        echo(final.line())
        return final


async def _progress(session: aiohttp.ClientSession, url: str, started: float, appended: int, failed: int) -> str:
    return (await _progress_value(session, url, started, appended, failed)).line()


async def _progress_value(
    session: aiohttp.ClientSession, url: str, started: float, appended: int, failed: int
) -> DemoProgress:
    try:
        published, depth = await _status(session, url)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        published, depth = -1, -1
    return DemoProgress(time.monotonic() - started, appended, published, depth, failed)
