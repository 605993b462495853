"""A module published to the running host while a desktop and the runtime are connected: both are disconnected
(1012), reconnect on their own and resume — every event the producer was promised applied once, in order, with no
rebuild (real host, control, runtime and desktop processes; issue 19)."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest
from desktop_stack import Desktop, Stack, stream_state

from autopilot_sync.control.client import fetch_session_token
from autopilot_sync.devtools.stack import DATABASE
from autopilot_sync.ops.host_publish import ModuleArtifact, PublishAnswer, publish_module

RUN = "r1"
STREAM = f"runtime.run.{RUN}.events"
#: The installed test modules (`pub_sync_v2`: the sync module plus a table).
MODULES = Path(__file__).resolve().parents[1] / "host" / "publish_modules"


def stream(state: dict, stream_id: str = STREAM) -> dict:
    return stream_state(state, stream_id)


async def twelve_events_followed(stack: Stack) -> tuple[list[int], Desktop]:
    """Start the stack, append 12 run events and wait until a desktop following the stream applied them all."""
    stack.start()
    promised = await stack.append_run_events(RUN, 12)
    desktop = stack.desktop("reader", streams=(STREAM,))
    await desktop.wait_for("the first events", lambda s: stream(s).get("applied") == 12)
    return promised, desktop


async def publish_as_owner(stack: Stack, python_module: str, *, clear: bool = False) -> PublishAnswer:
    """Publish an installed module to the live host as the database owner (the stack's owner key)."""
    owner = await fetch_session_token(stack.control_url, stack.owner_key, ["sync.subscribe"], [], None, "test")
    artifact = ModuleArtifact(python_module=python_module)
    return await publish_module(stack.host_url, DATABASE, owner.token, artifact, clear=clear)


async def test_a_live_publish_disconnects_the_desktop_which_resumes_without_gap_or_duplicate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(MODULES), os.environ.get("PYTHONPATH")])))
    stack = Stack(tmp_path)
    try:
        promised, desktop = await twelve_events_followed(stack)
        seen_before = len(desktop.states())

        # The database owner (the stack's owner key) publishes a compatible release to the live host.
        answer = await publish_as_owner(stack, "pub_sync_v2")
        assert answer.ok and answer.op == "updated" and answer.disconnected_clients, answer.text

        promised += await stack.append_run_events(RUN, 8, start=12)
        done = await desktop.wait_for(
            "every promised event after the publish", lambda s: stream(s).get("applied") == 20, within=60
        )
        phases = [state["connection"]["phase"] for state in desktop.states()[seen_before:]]
        assert any(phase != "live" for phase in phases), "the publish disconnected the desktop"
        assert done["connection"]["phase"] == "live"
        assert desktop.seqs(STREAM) == promised == list(range(1, 21))
        assert stream(done)["rebuilds"] == 0
    finally:
        stack.stop()


async def test_after_a_delete_data_publish_the_runtime_publishes_its_streams_again_and_keeps_publishing(
    tmp_path: Path,
) -> None:
    """The new incarnation holds no stream: the runtime notices on reconnect, sends each stream again from seq 1
    (same seqs, keys and hashes), its next appends follow on, and the desktop ends with the whole stream once."""
    stack = Stack(tmp_path)
    try:
        promised, desktop = await twelve_events_followed(stack)

        answer = await publish_as_owner(stack, "autopilot_sync.module", clear=True)
        assert answer.ok and answer.cleared, answer.text
        # a new incarnation trusts no issuer (the module fails closed): the owner names control again, as the
        # deployment runbook says; runtime and desktop wait through the gap (a refusal they retry)
        await stack.trust_control_async()

        promised += await stack.append_run_events(RUN, 8, start=12)
        done = await desktop.wait_for(
            "the whole stream on the new incarnation", lambda s: stream(s).get("applied") == 20, within=90
        )
        assert desktop.seqs(STREAM) == promised == list(range(1, 21))
        assert stream(done)["divergences"] == stream(done)["rebuilds"]  # any copy the host lost was rebuilt, no gap
        async with aiohttp.ClientSession() as http, http.get(f"{stack.runtime_url}/metrics") as response:
            metrics = await response.text()
        assert "autopilot_sync_runtime_events_republished_total 12.0" in metrics
        assert "autopilot_sync_runtime_dead_letters_open 0.0" in metrics
    finally:
        stack.stop()
