"""The official TypeScript SDK's cache stays whole when it unsubscribes one of two overlapping sets mid-commit.

A real host (sync module, control-issued tokens) runs with the fsync-gate test fault (tests/faults/fsync_gate/), so
"commits applied but not yet durable" is a state the test holds open instead of a millisecond race. The SDK
(`conformance/unsubscribe_race.mjs`, unchanged `spacetimedb` package) subscribes set A and set B, which overlaps A; a
writer commits while the disk is held; the SDK unsubscribes B; the disk is let go. Every row of A must still be in the
SDK's cache: the dropped rows of `UnsubscribeApplied(B)` must be exactly the rows B was sent.
"""

from __future__ import annotations

import asyncio
import json
import queue
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from autopilot_sync.client import ReducerCommitted, connect
from autopilot_sync.contract.canonical import hash_value
from autopilot_sync.control.client import fetch_session_token
from autopilot_sync.devtools.stack import DATABASE, LocalStack
from autopilot_sync.spacetime.values import Identity, Timestamp
from autopilot_sync.sync_bindings import AppendSyncEventsBatchItem

pytestmark = pytest.mark.node

CONFORMANCE = Path(__file__).resolve().parents[2] / "conformance"
SCRIPT = CONFORMANCE / "unsubscribe_race.mjs"
STREAM = "sdk-race"
BEFORE = 3  # events committed (and durable) before the race
DURING = 6  # events committed while the disk is held


class Reader:
    """The SDK script as a child process, driven one stdin line at a time; its JSON lines arrive on a queue."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._pump, daemon=True, name="sdk-stdout").start()
        threading.Thread(target=self._pump_errors, daemon=True, name="sdk-stderr").start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                self.lines.put(json.loads(line))
        self.lines.put({"step": "exited"})

    def _pump_errors(self) -> None:
        assert self.process.stderr is not None
        self.stderr.extend(self.process.stderr)

    def command(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    async def step(self, name: str) -> dict[str, Any]:
        """The next line the script printed (within 30 s), which must be step `name`."""
        record = await asyncio.to_thread(self.lines.get, True, 30.0)
        assert record.get("step") == name, f"expected {name}, got {record}; sdk stderr:\n{''.join(self.stderr)}"
        return record


@pytest.fixture
def node() -> str:
    found = shutil.which("node")
    if found is None or not (CONFORMANCE / "node_modules" / "spacetimedb").is_dir():
        pytest.skip("node or conformance/node_modules missing (./dev test installs them)")
    return found


@pytest.fixture
def stack(tmp_path: Path, fsync_gate: Any) -> Iterator[LocalStack]:
    local = LocalStack(tmp_path / "stack")
    local.host_env.update(fsync_gate.env())
    local.start_all(runtime=False)
    try:
        yield local
    finally:
        fsync_gate.release()
        local.stop_all()


def event(seq: int) -> AppendSyncEventsBatchItem:
    text, digest = hash_value({"n": seq})
    return AppendSyncEventsBatchItem(
        stream_id=STREAM,
        idempotency_key=f"{STREAM}:{seq}",
        kind="test.event",
        payload=text,
        payload_hash=digest,
        expected_seq=seq,
        published_at=Timestamp(1_700_000_000_000_000),
    )


def start_reader(node: str, host_url: str, token: str) -> Reader:
    """Start the SDK script (it subscribes both sets at once)."""
    process = subprocess.Popen(
        [node, str(SCRIPT), host_url, DATABASE, token, STREAM],
        cwd=CONFORMANCE,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return Reader(process)


async def query_sets(session: aiohttp.ClientSession, host_url: str) -> float:
    """The host's `autopilot_sync_host_query_sets` gauge: drops the moment the host has handled an Unsubscribe."""
    async with session.get(f"{host_url}/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith("autopilot_sync_host_query_sets "):
                return float(line.split()[1])
    raise AssertionError("no autopilot_sync_host_query_sets in /metrics")


async def test_official_sdk_keeps_every_row_of_a_set_when_an_overlapping_set_is_unsubscribed_mid_commit(
    node: str, stack: LocalStack, fsync_gate: Any
) -> None:
    grant = await fetch_session_token(
        stack.control_url, stack.producer_key, ("sync.append", "sync.subscribe"), (STREAM,), None, "test"
    )
    writer = await connect(stack.host_url, DATABASE, token=grant.token)
    # the key reads what it writes: events are visible to a stream's readers only (row-level security)
    granted = await writer.call("grant_stream_readers", STREAM, [Identity.from_hex(grant.identity)])
    assert isinstance(granted, ReducerCommitted), granted
    reader = start_reader(node, stack.host_url, grant.token)
    process = reader.process
    try:
        async with aiohttp.ClientSession() as session:
            await reader.step("subscribed")
            for seq in range(1, BEFORE + 1):
                assert isinstance(await writer.call("append_sync_events", [event(seq)]), ReducerCommitted)
            sets_before = await query_sets(session, stack.host_url)
            fsync_gate.hold()
            calls = [
                asyncio.ensure_future(writer.call("append_sync_events", [event(seq)]))
                for seq in range(BEFORE + 1, BEFORE + DURING + 1)
            ]
            await fsync_gate.wait_blocked()
            reader.command("unsubscribe")
            await reader.step("unsubscribe-sent")
            async with asyncio.timeout(20):
                while await query_sets(session, stack.host_url) != sets_before - 1:  # noqa: ASYNC110 (polled)
                    await asyncio.sleep(0.02)
            fsync_gate.release()
            for outcome in await asyncio.gather(*calls):
                assert isinstance(outcome, ReducerCommitted), outcome
        await reader.step("unsubscribed")
        reader.command(f"cache {BEFORE + DURING}")
        cached = await reader.step("cache")
        assert cached["seqs"] == list(range(1, BEFORE + DURING + 1)), (
            "the SDK's cache lost rows set A still covers (UnsubscribeApplied dropped rows B was never sent)"
        )
    finally:
        await writer.close()
        if process.poll() is None:
            process.kill()
        process.wait()
