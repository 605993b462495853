"""A module published to the running host while a desktop and the runtime are connected: both are disconnected
(1012), reconnect on their own and resume — every event the producer was promised applied once, in order, with no
rebuild (real host, control, runtime and desktop processes; issue 19)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from desktop_stack import Stack

from autopilot_sync.control.client import fetch_session_token
from autopilot_sync.devtools.stack import DATABASE
from autopilot_sync.ops.host_publish import ModuleArtifact, publish_module

RUN = "r1"
STREAM = f"runtime.run.{RUN}.events"
#: The installed test modules (`pub_sync_v2`: the sync module plus a table).
MODULES = Path(__file__).resolve().parents[1] / "host" / "publish_modules"


def stream(state: dict, stream_id: str = STREAM) -> dict:
    return next((s for s in state["streams"] if s["stream_id"] == stream_id), {})


async def test_a_live_publish_disconnects_the_desktop_which_resumes_without_gap_or_duplicate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(MODULES), os.environ.get("PYTHONPATH")])))
    stack = Stack(tmp_path)
    try:
        stack.start()
        promised = await stack.append_run_events(RUN, 12)
        desktop = stack.desktop("reader", streams=(STREAM,))
        await desktop.wait_for("the first events", lambda s: stream(s).get("applied") == 12)
        seen_before = len(desktop.states())

        # The database owner (the stack's owner key) publishes a compatible release to the live host.
        owner = await fetch_session_token(stack.control_url, stack.owner_key, ["sync.subscribe"], [], None, "test")
        answer = await publish_module(
            stack.host_url, DATABASE, owner.token, ModuleArtifact(python_module="pub_sync_v2")
        )
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


async def test_a_delete_data_publish_makes_the_desktop_rebuild_instead_of_keeping_history_the_host_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = Stack(tmp_path)
    try:
        stack.start()
        await stack.append_run_events(RUN, 12)
        desktop = stack.desktop("reader", streams=(STREAM,))
        await desktop.wait_for("the first events", lambda s: stream(s).get("applied") == 12)

        owner = await fetch_session_token(stack.control_url, stack.owner_key, ["sync.subscribe"], [], None, "test")
        answer = await publish_module(
            stack.host_url, DATABASE, owner.token, ModuleArtifact(python_module="autopilot_sync.module"), clear=True
        )
        assert answer.ok and answer.cleared, answer.text

        # The stream's head row is gone with the data: the desktop's copy is ahead of the host, so it rebuilds.
        done = await desktop.wait_for(
            "the rebuild", lambda s: stream(s).get("rebuilds") == 1 and stream(s).get("applied") == 0, within=60
        )
        assert stream(done)["last_rebuild"] == "checkpoint_ahead" and stream(done)["divergences"] == 1
        assert desktop.seqs(STREAM) == []
    finally:
        stack.stop()
