"""The UI and the headless mode render a state value: what the user must see is on screen / in the JSON line."""

from __future__ import annotations

import html
import io
import json
import re
from dataclasses import replace
from pathlib import Path

from autopilot_sync.desktop.app import DesktopApp
from autopilot_sync.desktop.headless import JsonLinesPrinter
from autopilot_sync.desktop.rebuild import TRIMMED_NOTICE
from autopilot_sync.desktop.screenshots import (
    EXAMPLE_NOW,
    RECORDED,
    SIZES,
    backing_off_state,
    live_state,
    read_recording,
    rebuilding_state,
    render_recording,
)
from autopilot_sync.desktop.state import StateHub

DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
_SVG_TEXT = re.compile(r'<text class="[^"]*" x="([\d.]+)" y="([\d.]+)"[^>]*>(.*?)</text>')


def screen_text(app: DesktopApp) -> str:
    """The screen as plain text lines, read back from the SVG screenshot (spans joined per row)."""
    rows: dict[float, list[tuple[float, str]]] = {}
    for match in _SVG_TEXT.finditer(app.export_screenshot()):
        rows.setdefault(float(match.group(2)), []).append((float(match.group(1)), html.unescape(match.group(3))))
    return "\n".join("".join(t for _, t in sorted(spans)).replace("\xa0", " ") for _, spans in sorted(rows.items()))


async def test_the_ui_shows_connection_presence_streams_and_log() -> None:
    state = live_state()
    app = DesktopApp(StateHub(state), clock=lambda: EXAMPLE_NOW)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        text = screen_text(app)
    for needle in ("live", "v2.bsatn.spacetimedb", "4m 12s", "3 users", "4 connections", "(you)", "runs", "audit"):
        assert needle in text, needle
    assert "run.finished" in text  # the selected stream's log
    assert "1900" in text  # audit's lag


async def test_the_ui_follows_state_changes_and_reports_selection() -> None:
    hub = StateHub(live_state())
    selected: list[str] = []
    app = DesktopApp(hub, on_select=selected.append, clock=lambda: EXAMPLE_NOW)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        hub.publish(rebuilding_state())
        await pilot.pause()
        assert TRIMMED_NOTICE in screen_text(app)
        hub.publish(backing_off_state())
        await pilot.pause()
        assert "next retry in 2.4s" in screen_text(app)
        await pilot.press("down")
        await pilot.pause()
    assert selected and selected[-1] in {"workers", "audit"}


def test_headless_prints_one_line_per_change_only() -> None:
    out = io.StringIO()
    hub = StateHub(live_state())
    JsonLinesPrinter(out).attach(hub)
    hub.publish(replace(live_state(), log=()))  # the log is not part of the JSON: no new line
    hub.publish(rebuilding_state())
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 2
    first, second = (line["state"] for line in lines)
    assert first["presence"] == {
        "users": 3,
        "connections": 4,
        "npubs": [entry.npub for entry in live_state().presence.entries],
        "self_connections": 1,
    }
    workers = next(s for s in second["streams"] if s["stream_id"] == "workers")
    assert workers["notice"] == TRIMMED_NOTICE and workers["lag"] == 260


async def test_docs_screenshots_are_what_the_code_draws_from_the_recorded_real_states() -> None:
    recorded = read_recording(DOCS_IMAGES / RECORDED)
    rendered = await render_recording(recorded)
    assert set(rendered) == {f"{stem}-{w}x{h}" for stem in recorded for w, h in SIZES}
    for stem, svg in rendered.items():
        path = DOCS_IMAGES / f"{stem}.svg"
        assert path.read_text(encoding="utf-8") == svg, f"{path} is stale: run `autopilot-sync desktop screenshots`"
