"""The whole system on the TypeScript twin of the sync module: runtime publishes, the desktop applies, in order.

Issue 18 item 3: the host serves the built twin (`modules/autopilot-sync`, run in a Node child) while control, the
runtime and the desktop are the same processes as ever. The runtime's producer API appends run events; a headless
desktop replays them, follows live batches, sees presence, and acks its checkpoint — every promised seq applied
exactly once and in order, as against the Python module (test_desktop_processes.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from desktop_stack import Stack, running_stack, stream_state

pytestmark = pytest.mark.node

RUN = "twin"
STREAM = f"runtime.run.{RUN}.events"


@pytest.fixture
def stack(tmp_path: Path, typescript_sync_module: Path) -> Iterator[Stack]:
    with running_stack(tmp_path, configure=lambda s: setattr(s, "module", str(typescript_sync_module))) as running:
        yield running


def stream(state: dict, stream_id: str = STREAM) -> dict:
    return stream_state(state, stream_id)


async def test_runtime_events_reach_the_desktop_in_order_through_the_typescript_twin(stack: Stack) -> None:
    promised = await stack.append_run_events(RUN, 20)
    desktop = stack.desktop("reader", streams=(STREAM,))
    await desktop.wait_for("the replay", lambda s: stream(s).get("applied") == 20, within=60)
    for batch in range(3):
        promised += await stack.append_run_events(RUN, 5, start=100 * batch)
    done = await desktop.wait_for("live events", lambda s: stream(s).get("applied") == len(promised), within=60)
    assert stream(done)["phase"] == "live" and stream(done)["gaps"] == 0 and stream(done)["duplicates"] == 0
    applied_history = [stream(s).get("applied", 0) for s in desktop.states()]
    assert applied_history == sorted(applied_history)
    assert desktop.seqs(STREAM) == promised == list(range(1, len(promised) + 1))
    assert done["presence"]["users"] >= 2  # the runtime's key and the desktop's, from the twin's presence rows
    await desktop.wait_for("the checkpoint acked", lambda s: stream(s).get("acked") == len(promised), within=60)
