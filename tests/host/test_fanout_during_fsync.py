"""A commit's subscription updates are evaluated while its fsync runs, and reach no socket before the fsync returns.

Unit level: the fsync is a test double that blocks until the test lets it go (or fails), so "before durability" is a
state the test holds. The hub's evaluation (`SubscriptionManager.on_commit`) and its sending (`_send_fan_out`, the
only step that writes to sockets) are observed by wrapping them. The same rule over real sockets, with the official
SDK and by hand, is `test_answers_after_durability.py` and tests/conformance/test_official_sdk_durability.py.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autopilot_sync.examples.chat import module
from autopilot_sync.host import commitlog
from autopilot_sync.host.call_outcome import CallStatus
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.host.websocket import WebSocketHub, WebSocketOptions
from autopilot_sync.spacetime.messages import SubscribeApplied
from autopilot_sync.spacetime.values import ConnectionId, Identity

ALICE = Caller(Identity(0xA11CE), ConnectionId(1), {"sub": "alice"})


class HeldFsync:
    """Test double of the disk flush: each call blocks until released, then succeeds or raises (`fail`)."""

    def __init__(self) -> None:
        self.holding = False
        self.started = threading.Semaphore(0)
        self.release = threading.Event()
        self.fail = False

    def __call__(self, fds: list[int]) -> None:
        if not self.holding:
            return
        self.started.release()
        assert self.release.wait(10)
        if self.fail:
            raise OSError(5, "injected I/O error")


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldFsync]:
    held = HeldFsync()
    monkeypatch.setattr(commitlog, "_fsync_all", held)
    try:
        yield held
    finally:
        held.release.set()


class Observed:
    """Each evaluation and each send of the hub, in order, as (step, offset, clients with an update)."""

    def __init__(self, hub: WebSocketHub) -> None:
        self.steps: list[tuple[str, int, list[Any]]] = []
        evaluate, send = hub.subscriptions.on_commit, hub._send_fan_out

        def on_commit(tx: Any) -> Any:
            updates = evaluate(tx)
            self.steps.append(("evaluated", tx.offset, list(updates)))
            return updates

        def send_fan_out(tx: Any, fan_out: Any) -> None:
            self.steps.append(("sent", tx.offset, list(fan_out.updates)))
            send(tx, fan_out)

        hub.subscriptions.on_commit = on_commit  # type: ignore[method-assign]
        hub._send_fan_out = send_fan_out  # type: ignore[method-assign]


async def started_hub(tmp_path: Path) -> tuple[HostEngine, WebSocketHub, Observed, str]:
    engine = HostEngine(module, tmp_path, "chat", EngineConfig())
    await engine.start()
    hub = WebSocketHub(engine, WebSocketOptions())
    subscriber = "subscriber"  # test double of a connection: a key the subscription engine files updates under
    applied = hub.subscriptions.subscribe(subscriber, 1, 1, ["SELECT * FROM person"])
    assert isinstance(applied, SubscribeApplied)
    return engine, hub, Observed(hub), subscriber


async def test_updates_are_evaluated_while_the_fsync_runs_and_sent_only_once_it_returned(
    tmp_path: Path, disk: HeldFsync
) -> None:
    engine, hub, observed, subscriber = await started_hub(tmp_path)
    try:
        disk.holding = True
        call = asyncio.ensure_future(engine.call_reducer("add_person", ("ada", 36), ALICE))
        assert await asyncio.to_thread(disk.started.acquire, True, 10), "the fsync never started"
        for _ in range(20):  # the loop is free while the disk holds: the evaluation runs meanwhile
            await asyncio.sleep(0.005)
        offset = engine.offset
        assert observed.steps == [("evaluated", offset, [subscriber])]
        assert not call.done() and engine.durable_offset < offset
        disk.release.set()
        outcome = await asyncio.wait_for(call, 10)
        assert outcome.status is CallStatus.COMMITTED
        assert observed.steps == [("evaluated", offset, [subscriber]), ("sent", offset, [subscriber])]
        assert len(hub.pending) == 0
    finally:
        disk.release.set()
        await engine.stop()


async def test_a_failed_fsync_sends_none_of_the_updates_evaluated_for_it(tmp_path: Path, disk: HeldFsync) -> None:
    engine, hub, observed, _subscriber = await started_hub(tmp_path)
    try:
        disk.holding = True
        call = asyncio.ensure_future(engine.call_reducer("add_person", ("ada", 36), ALICE))
        assert await asyncio.to_thread(disk.started.acquire, True, 10), "the fsync never started"
        second = asyncio.ensure_future(engine.call_reducer("add_person", ("bob", 40), ALICE))
        for _ in range(20):
            await asyncio.sleep(0.005)
        assert [step for step, _, _ in observed.steps] == ["evaluated", "evaluated"]
        disk.fail = True
        disk.release.set()
        for outcome in await asyncio.wait_for(asyncio.gather(call, second), 10):
            assert outcome.status is CallStatus.INTERNAL_ERROR and "storage failed" in outcome.message
        await asyncio.sleep(0.05)
        assert all(step == "evaluated" for step, _, _ in observed.steps), "an update of a failed commit was sent"
        assert len(hub.pending) == 0, "the evaluated updates of commits that never became durable are dropped"
    finally:
        disk.release.set()
        await engine.stop()


async def test_commits_evaluated_early_are_sent_in_commit_order(tmp_path: Path, disk: HeldFsync) -> None:
    engine, _hub, observed, subscriber = await started_hub(tmp_path)
    try:
        disk.holding = True
        calls = [asyncio.ensure_future(engine.call_reducer("add_person", (f"p{i}", i), ALICE)) for i in range(5)]
        assert await asyncio.to_thread(disk.started.acquire, True, 10)
        disk.holding = False  # the next flushes pass at once
        disk.release.set()
        await asyncio.wait_for(asyncio.gather(*calls), 10)
        sent = [offset for step, offset, _ in observed.steps if step == "sent"]
        evaluated = [offset for step, offset, _ in observed.steps if step == "evaluated"]
        assert sent == evaluated == sorted(sent) and len(sent) == 5
        for step, offset, clients in observed.steps:
            assert clients == [subscriber], (step, offset)
    finally:
        disk.release.set()
        await engine.stop()
