"""The desktop a user meets: 80x24 first, the help screen, the command palette's own commands, one event in detail.

Pilot tests of the real app rendering state values; the integrity check is a recording double here (named so) and
runs against real host processes in `test_desktop_live_ui.py`.
"""

from __future__ import annotations

import json
from dataclasses import replace

from test_desktop_ui import screen_text

from autopilot_sync.desktop.app import DesktopApp
from autopilot_sync.desktop.screenshots import EXAMPLE_NOW, live_state
from autopilot_sync.desktop.state import DesktopState, LogLine, StateHub, StreamPhase, StreamView

LONG_ID = "run-2f9c41d7e0b84a6c"


def _state() -> DesktopState:
    """The example state with a stream id as long as the runtime's run streams, and chain fields on the log."""
    base = live_state()
    log = tuple(
        replace(
            line,
            idempotency_key=f"r-17:{line.seq}",
            payload_hash=f"sha256:{line.seq:064x}",
            chain="sha256:" + "ab" * 32,
        )
        for line in base.log
    )
    streams = (*base.streams, StreamView(LONG_ID, 250, 120, 1, 1, StreamPhase.REPLAYING, replay_from_seq=0))
    return replace(base, streams=streams, log=log)


def _row(text: str, stream_id: str) -> str:
    return next(line for line in text.splitlines() if f"│ {stream_id}" in line or f"│{stream_id}" in line)


async def test_at_80x24_every_stream_shows_its_id_head_applied_lag_and_status() -> None:
    app = DesktopApp(StateHub(_state()), clock=lambda: EXAMPLE_NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = screen_text(app)
    assert _row(text, "runs").replace(" ", "").endswith("424200live│") or "live" in _row(text, "runs")
    audit = _row(text, "audit")
    for needle in ("5000", "3100", "1900", "replaying 62%"):
        assert needle in audit, (needle, audit)
    long_row = _row(text, LONG_ID)
    for needle in ("250", "120", "130", "replaying 48%"):
        assert needle in long_row, (needle, long_row)
    assert "3 users · 4 connections" in text  # the presence pane folds into the connection line
    assert "run.finished" in text and "Events runs" in text


async def test_at_120x40_the_presence_pane_and_replay_bars_show_too() -> None:
    app = DesktopApp(StateHub(_state()), clock=lambda: EXAMPLE_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        text = screen_text(app)
    assert "(you)" in text and "Presence" in text
    assert "██████░░░░  62%" in _row(text, "audit") and "replaying" in _row(text, "audit")
    assert "250" in _row(text, LONG_ID)


async def test_help_lists_every_binding_and_esc_closes_it() -> None:
    app = DesktopApp(StateHub(_state()), clock=lambda: EXAMPLE_NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        text = screen_text(app)
        for binding in DesktopApp.BINDINGS:
            assert not isinstance(binding, tuple)
            assert binding.description in text, binding
        for needle in ("ctrl+c", "ctrl+p", "Enter", "Tab", "copy"):
            assert needle in text, needle
        await pilot.press("escape")
        await pilot.pause()
        assert "Keys" not in screen_text(app)


async def test_states_arriving_while_help_is_open_are_drawn_behind_it() -> None:
    hub = StateHub(_state())
    app = DesktopApp(hub, clock=lambda: EXAMPLE_NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        hub.publish(replace(hub.state, streams=(StreamView("later", 9, 9, 1, 1, StreamPhase.LIVE),)))
        await pilot.pause(1.2)  # the connection line's clock ticks too
        await pilot.press("escape")
        await pilot.pause()
        assert "later" in screen_text(app)


async def test_ctrl_c_quits() -> None:
    app = DesktopApp(StateHub(_state()), clock=lambda: EXAMPLE_NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert not app.is_running


async def test_enter_on_an_event_shows_every_field_and_c_copies_it() -> None:
    state = _state()
    app = DesktopApp(StateHub(state), clock=lambda: EXAMPLE_NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("tab")  # to the events pane; its cursor follows the newest event
        await pilot.pause()
        assert app.focused is not None and app.focused.id == "log-table"
        await pilot.press("up", "enter")
        await pilot.pause()
        text = screen_text(app)
        for needle in ("Event runs #41", "run.step", "r-17:41", f"sha256:{41:064x}", '"status": "running"', "epoch"):
            assert needle in text, needle
        await pilot.press("c")
        await pilot.pause()
    copied = json.loads(app.clipboard)
    assert copied["seq"] == 41 and copied["idempotency_key"] == "r-17:41" and copied["payload"]["step"] == "test"
    assert copied["chain"] == "sha256:" + "ab" * 32


async def _palette(pilot: object, app: DesktopApp, query: str) -> None:
    from textual.pilot import Pilot

    assert isinstance(pilot, Pilot)
    await pilot.press("ctrl+p")
    await pilot.pause()
    await pilot.press(*query)
    await pilot.pause(0.5)
    await pilot.press("enter")
    await pilot.pause()


async def test_palette_follows_a_stream_jumps_to_a_seq_and_copies_an_event() -> None:
    hub = StateHub(_state())
    followed: list[str] = []
    app = DesktopApp(hub, on_select=followed.append, clock=lambda: EXAMPLE_NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await _palette(pilot, app, "follow stream audit")
        assert followed[-1] == "audit"
        await _palette(pilot, app, "39")  # "Jump to seq 39" is the first hit for a number
        assert app.focused is not None and app.focused.id == "log-table"
        await pilot.press("enter")
        await pilot.pause()
        assert "Event runs #39" in screen_text(app)
        await pilot.press("escape")
        await _palette(pilot, app, "copy event 42")
        assert json.loads(app.clipboard)["kind"] == "run.finished"
        await _palette(pilot, app, "999")
        assert "seq 999 is not in the log (it holds 38..42)" in screen_text(app)


async def test_palette_verifies_a_stream_and_shows_the_verdict() -> None:
    asked: list[str] = []

    async def recording_verify(stream_id: str) -> str:  # a test double: the real check runs in the process test
        asked.append(stream_id)
        return f"BROKEN {stream_id} at seq 7: payload does not hash to its payload_hash"

    app = DesktopApp(StateHub(_state()), verify=recording_verify, clock=lambda: EXAMPLE_NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        await _palette(pilot, app, "verify integrity of stream workers")
        await pilot.pause(0.3)
        assert asked == ["workers"]
        assert app.verdicts["workers"].startswith("BROKEN workers at seq 7")
        assert "BROKEN workers at seq 7" in screen_text(app)


async def test_a_line_without_chain_fields_shows_dashes_not_blanks() -> None:
    state = replace(_state(), log=(LogLine(5, "run.log", "not json", 0),))
    app = DesktopApp(StateHub(state), clock=lambda: EXAMPLE_NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        app.show_event(5)
        await pilot.pause()
        text = screen_text(app)
    assert "not json" in text and "chain" in text and "—" in text


async def test_long_runtime_stream_ids_leave_every_column_readable_at_80_and_120_columns() -> None:
    ids = [f"runtime.worker.demo-1606a7-worker-{n}.lifecycle" for n in range(3)]
    streams = tuple(
        StreamView(stream_id, 41, 30, 1, 1, StreamPhase.REBUILDING, "history trimmed — rebuilding", replay_from_seq=30)
        for stream_id in ids
    )
    state = replace(_state(), streams=streams, selected_stream=ids[0])
    for size in ((80, 24), (120, 40)):
        app = DesktopApp(StateHub(state), clock=lambda: EXAMPLE_NOW)
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            text = screen_text(app)
        for n in range(3):
            row = _row(text, "runtime.worke")  # the first; each id keeps its distinguishing end
            assert f"er-{n}.lifecycle" in text, (size, n)
            for needle in ("41", "30", "11", "rebuilding"):
                assert needle in row, (size, needle, row)
        assert "history trimmed — rebuilding" in text, size  # under the selected stream's log


async def test_verify_against_an_unreachable_host_says_it_could_not_run_in_one_line() -> None:
    from autopilot_sync.desktop.integrity import verify_stream
    from autopilot_sync.devtools.processes import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    verdict = await verify_stream(url, "autopilot-sync", "runs", None, within=10)
    assert verdict.startswith("could not verify runs: ") and "\n" not in verdict
