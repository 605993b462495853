"""The desktop follows a bounded set of streams live: more streams than the host lets one connection subscribe are
all applied exactly once, in order, by dropping the least recently active one and resuming it from its checkpoint
when its head moves again (real host, control, runtime and desktop processes); and a host cap below the bound is
said in the desktop's status, not left silent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from desktop_stack import Stack, running_stack, stream_state

from autopilot_sync.desktop.livebound import live_streams, refusal_notice

STREAMS = 8


def run_stream(run_id: str) -> str:
    return f"runtime.run.{run_id}.events"


def test_the_least_recently_active_stream_is_the_one_left_idle() -> None:
    activity = {"a": 10, "b": 30, "c": 20, "d": 40}
    assert live_streams(activity, 3) == {"b", "c", "d"}
    assert live_streams({**activity, "a": 50}, 3) == {"a", "b", "d"}  # a moved again: c, now the oldest, drops


def test_the_selected_stream_stays_live_however_old_its_head() -> None:
    activity = {"a": 10, "b": 30, "c": 20, "d": 40}
    assert live_streams(activity, 3, ("a",)) == {"a", "b", "d"}
    assert live_streams(activity, 1, ("a",)) == {"a"}
    assert live_streams(activity, 2, ("gone",)) == {"b", "d"}  # a selection no longer followed is ignored


def test_ties_and_streams_without_a_head_choose_stably() -> None:
    assert live_streams({"b": 0, "a": 0, "c": 0}, 2) == {"a", "b"}
    assert live_streams({}, 3) == frozenset()


def test_the_refusal_notice_is_one_line_naming_the_stream_and_the_setting() -> None:
    notice = refusal_notice("s1", "too many query sets on this connection:\n3 held, at most 3")
    assert "\n" not in notice
    assert "s1" in notice and "3 held, at most 3" in notice and "AUTOPILOT_SYNC_DESKTOP_MAX_LIVE_STREAMS" in notice


def bound(stack: Stack, host_cap: int) -> None:
    stack.host_env["AUTOPILOT_SYNC_HOST_MAX_QUERY_SETS_PER_CONNECTION"] = str(host_cap)


@pytest.fixture
def small_cap_stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path, configure=lambda s: bound(s, 6)) as running:
        yield running


async def test_more_streams_than_the_live_bound_are_each_applied_once_in_order_and_never_refused(
    small_cap_stack: Stack,
) -> None:
    stack = small_cap_stack
    desktop = stack.desktop("bounded", settings={"max_live_streams": 3})
    await desktop.wait_for("live", lambda s: s["connection"]["phase"] == "live")
    promised: dict[str, list[int]] = {}
    for round_ in range(2):  # the second round moves streams that went idle: each resumes from its checkpoint
        for i in range(STREAMS):
            stream_id = run_stream(f"bound{i}")
            promised.setdefault(stream_id, [])
            promised[stream_id] += await stack.append_run_events(f"bound{i}", 3, start=3 * round_)
            want = len(promised[stream_id])
            await desktop.wait_for(
                f"{stream_id} at {want}",
                lambda s, sid=stream_id, n=want: stream_state(s, sid).get("applied") == n,
                within=60,
            )
    states = desktop.states()
    final = states[-1]
    assert all(not state["notice"] for state in states), [s["notice"] for s in states if s["notice"]]
    assert max(sum(1 for s in state["streams"] if s["phase"] not in ("idle", "waiting")) for state in states) <= 3
    assert any(s["phase"] == "idle" for state in states for s in state["streams"])
    for stream_id in promised:
        view = stream_state(final, stream_id)
        assert view["applied"] == view["head"] == 6 and view["duplicates"] == 0 and view["rebuilds"] == 0
    assert desktop.stop() == 0
    for stream_id, seqs in promised.items():
        assert desktop.seqs(stream_id) == seqs == list(range(1, 7))


async def test_a_host_cap_below_the_live_bound_is_said_in_the_status(tmp_path: Path) -> None:
    with running_stack(tmp_path, configure=lambda s: bound(s, 3)) as stack:  # presence + heads + one stream
        desktop = stack.desktop("refused", settings={"max_live_streams": 3})
        await desktop.wait_for("live", lambda s: s["connection"]["phase"] == "live")
        for i in range(2):
            await stack.append_run_events(f"refused{i}", 1)
        refused = await desktop.wait_for("the refusal", lambda s: "host refused to follow" in s["notice"], within=60)
        assert "too many query sets" in refused["notice"] and "\n" not in refused["notice"]
        assert refused["connection"]["phase"] == "live"
