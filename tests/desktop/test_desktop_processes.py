"""The desktop as a real process against real host, control and runtime processes, watched through its JSON lines.

Each test records what the producer was promised (the seqs the runtime answered) and what the desktop applied (its
SQLite file), then checks the promise: every promised event applied once, in order, whatever happened in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from desktop_stack import Stack, running_stack, stream_state

from autopilot_sync.control.client import fetch_session_token
from autopilot_sync.desktop.rebuild import TRIMMED_NOTICE
from autopilot_sync.devtools.stack import DATABASE

RUN = "r1"
STREAM = f"runtime.run.{RUN}.events"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path) as running:
        yield running


def stream(state: dict, stream_id: str = STREAM) -> dict:
    return stream_state(state, stream_id)


async def test_presence_counts_follow_a_second_desktop_joining_and_leaving(stack: Stack) -> None:
    first = stack.desktop("first")
    # the runtime holds one connection of its own: users/connections count it too
    base = await first.wait_for("own presence", lambda s: s["presence"]["self_connections"] == 1)
    users, connections = base["presence"]["users"], base["presence"]["connections"]
    second = stack.desktop("second")
    joined = await first.wait_for(
        "the second desktop in presence",
        lambda s: s["presence"]["users"] == users + 1 and s["presence"]["connections"] == connections + 1,
    )
    second_state = await second.wait_for("its own presence", lambda s: s["presence"]["self_connections"] == 1)
    assert second_state["npub"] in joined["presence"]["npubs"]
    assert first.last()["npub"] in joined["presence"]["npubs"]
    assert second.stop() == 0
    await first.wait_for(
        "the second desktop gone",
        lambda s: s["presence"]["users"] == users and s["presence"]["connections"] == connections,
    )


async def test_runtime_events_are_applied_in_order_exactly_once(stack: Stack) -> None:
    promised = await stack.append_run_events(RUN, 30)
    desktop = stack.desktop("reader", streams=(STREAM,))
    await desktop.wait_for("the replay", lambda s: stream(s).get("applied") == 30)
    for batch in range(5):
        promised += await stack.append_run_events(RUN, 7, start=100 * batch)
    done = await desktop.wait_for("live events", lambda s: stream(s).get("applied") == len(promised))
    assert stream(done)["lag"] == 0 and stream(done)["phase"] == "live"
    applied_history = [stream(s).get("applied", 0) for s in desktop.states()]
    assert applied_history == sorted(applied_history)
    assert desktop.seqs(STREAM) == promised == list(range(1, len(promised) + 1))
    await desktop.wait_for("the checkpoint acked", lambda s: stream(s).get("acked") == len(promised))


async def test_host_sigkill_and_restart_resumes_without_gap_or_duplicate(stack: Stack) -> None:
    promised = await stack.append_run_events(RUN, 20)
    desktop = stack.desktop("survivor")
    await desktop.wait_for("the first events", lambda s: stream(s).get("applied") == 20)
    assert stack.host is not None
    stack.host.kill()
    await desktop.wait_for("backing off", lambda s: s["connection"]["phase"] in ("backing_off", "connecting"))
    promised += await stack.append_run_events(RUN, 15, start=20)  # held in the runtime's outbox meanwhile
    stack.start_host()
    await desktop.wait_for("live again", lambda s: s["connection"]["phase"] == "live", within=60)
    promised += await stack.append_run_events(RUN, 5, start=35)
    await desktop.wait_for("every promised event", lambda s: stream(s).get("applied") == len(promised), within=60)
    assert desktop.seqs(STREAM) == promised == list(range(1, 41))
    assert stream(desktop.last())["rebuilds"] == 0


async def test_trimmed_history_rebuilds_from_the_retained_floor_once(stack: Stack) -> None:
    await stack.append_run_events(RUN, 10)
    desktop = stack.desktop("stale")
    await desktop.wait_for("the first events", lambda s: stream(s).get("applied") == 10)
    assert desktop.stop() == 0
    await stack.append_run_events(RUN, 10, start=10)
    await stack.call_as_admin("trim_stream", STREAM, 16)
    restarted = stack.desktop("stale")  # same config dir: resumes from checkpoint 10, below the floor 16
    done = await restarted.wait_for("the rebuild", lambda s: stream(s).get("applied") == 20)
    assert any(stream(s).get("notice") == TRIMMED_NOTICE for s in restarted.states())
    assert stream(done)["rebuilds"] == 1
    assert restarted.seqs(STREAM) == list(range(16, 21))
    await stack.append_run_events(RUN, 3, start=20)
    later = await restarted.wait_for("events after the rebuild", lambda s: stream(s).get("applied") == 23)
    assert stream(later)["rebuilds"] == 1 and stream(later)["notice"] == ""
    assert restarted.seqs(STREAM) == list(range(16, 24))


@pytest.fixture
def owned_stack(tmp_path: Path) -> Iterator[Stack]:
    """A stack whose database owner is the producer's key (through control's tokens), as an operator would set it."""
    with running_stack(tmp_path, configure=lambda s: setattr(s, "owner_key", s.producer_key)) as running:
        yield running


async def retained_from(stack: Stack, stream_id: str) -> int:
    """The stream's floor, as the owner reads it over `/sql`."""
    token = await fetch_session_token(stack.control_url, stack.producer_key, ("sync.subscribe",), ("*",), None, "test")
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{stack.host_url}/v1/database/{DATABASE}/sql",
            data=f"SELECT retained_from_seq FROM stream_head WHERE stream_id = '{stream_id}'",
            headers={"Authorization": f"Bearer {token.token}"},
        ) as response,
    ):
        assert response.status == 200, await response.text()
        (result,) = await response.json()
    return int(result["rows"][0][0]) if result["rows"] else 0


async def test_owner_set_retention_trims_on_its_own_and_a_desktop_behind_it_rebuilds_once(
    owned_stack: Stack,
) -> None:
    stack = owned_stack
    await stack.append_run_events(RUN, 10)
    desktop = stack.desktop("behind")
    await desktop.wait_for("the first events", lambda s: stream(s).get("applied") == 10)
    assert desktop.stop() == 0
    await stack.call_with(("sync.subscribe",), "set_sync_retention", 5, 0, 100_000)  # keep 5 events, run every 0.1 s
    await stack.append_run_events(RUN, 10, start=10)
    for _ in range(300):
        if await retained_from(stack, STREAM) == 16:
            break
        await asyncio.sleep(0.1)
    assert await retained_from(stack, STREAM) == 16
    restarted = stack.desktop("behind")  # resumes from checkpoint 10, below the floor the timer raised to 16
    done = await restarted.wait_for("the rebuild", lambda s: stream(s).get("applied") == 20)
    assert any(stream(s).get("notice") == TRIMMED_NOTICE for s in restarted.states())
    assert stream(done)["rebuilds"] == 1
    assert restarted.seqs(STREAM) == list(range(16, 21))


async def test_a_live_desktop_stopped_by_sigterm_leaves_no_unclosed_session_or_loop_warning(stack: Stack) -> None:
    """`up --duration` ends its desktop with SIGTERM; what the desktop prints on the way out must be only its states."""
    await stack.append_run_events(RUN, 5)
    desktop = stack.desktop("stopped", streams=(STREAM,))
    await desktop.wait_for("live", lambda s: stream(s).get("applied") == 5 and stream(s).get("phase") == "live")
    await stack.append_run_events(RUN, 5, start=5)
    await desktop.wait_for("the new events", lambda s: stream(s).get("applied") == 10)
    assert desktop.stop() == 0
    assert desktop.process._reader is not None
    desktop.process._reader.join(10)
    printed = "\n".join(desktop.process.output)
    for warning in ("Unclosed", "Event loop is closed", "Traceback", "Exception ignored"):
        assert warning not in printed, printed[-3000:]
