"""The screenshots in docs/desktop.md: the real UI rendering states captured from a real run, saved as SVG.

`tests/desktop/test_desktop_screens_real.py` starts host, control, runtime and `runtime demo` as processes, runs a
desktop's sync against them and records the `DesktopState`s it reaches (live, backing off, rebuilding) in
`docs/images/desktop-states.json`. `autopilot-sync desktop screenshots` renders those recorded states at 80x24 and
120x40, so the files only change when the UI or the recording does. The fixed example states below are for unit
tests of the UI only.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, cast

from autopilot_sync.desktop.app import DesktopApp
from autopilot_sync.desktop.rebuild import TRIMMED_NOTICE
from autopilot_sync.desktop.state import (
    ConnectionPhase,
    ConnectionView,
    DesktopState,
    LogLine,
    PresenceEntry,
    PresenceView,
    StateHub,
    StreamPhase,
    StreamView,
)
from autopilot_sync.nostr.keys import SecretKey

EXAMPLE_NOW = 1_767_225_600.0
"""The fixed clock of the example states (2026-01-01T00:00:00Z)."""


def _example_entry(seed: int, connections: int, is_self: bool, kind: str) -> PresenceEntry:
    """A presence entry for a deterministic (and valid) example key."""
    public = SecretKey(bytes([seed]) * 32).public_key()
    return PresenceEntry(public.npub, public.hex, connections, is_self, (kind,))


_SELF = _example_entry(1, 1, True, "desktop")
_PEER = _example_entry(2, 2, False, "desktop")
_RUNTIME = _example_entry(3, 1, False, "runtime")


def live_state() -> DesktopState:
    """Connected, caught up on two streams, replaying a third; three users on four connections."""
    log = tuple(
        LogLine(seq, kind, payload, int((EXAMPLE_NOW - 40 + seq) * 1_000_000))
        for seq, kind, payload in [
            (38, "run.step", '{"run":"r-17","step":"plan","status":"ok"}'),
            (39, "run.step", '{"run":"r-17","step":"edit","status":"ok"}'),
            (40, "run.log", '{"line":"applied 3 files","run":"r-17"}'),
            (41, "run.step", '{"run":"r-17","step":"test","status":"running"}'),
            (42, "run.finished", '{"outcome":"success","run":"r-17"}'),
        ]
    )
    return DesktopState(
        npub=_SELF.npub,
        host_url="http://127.0.0.1:3000",
        database="autopilot-sync",
        connection=ConnectionView(
            ConnectionPhase.LIVE, "v2.bsatn.spacetimedb", attempt=0, token_expires_at=EXAMPLE_NOW + 252
        ),
        presence=PresenceView(4, 3, (_SELF, _PEER, _RUNTIME)),
        streams=(
            StreamView("runs", 42, 42, 1, 1, StreamPhase.LIVE, acked_seq=42),
            StreamView("workers", 17, 17, 1, 1, StreamPhase.LIVE, acked_seq=17),
            StreamView("audit", 5000, 3100, 1, 1, StreamPhase.REPLAYING, replay_from_seq=0, acked_seq=3000),
        ),
        selected_stream="runs",
        log=log,
    )


def backing_off_state() -> DesktopState:
    """The host went away: backing off with the next retry shown; streams keep their applied position."""
    base = live_state()
    return replace(
        base,
        connection=ConnectionView(
            ConnectionPhase.BACKING_OFF,
            "v2.bsatn.spacetimedb",
            attempt=3,
            next_retry_at=EXAMPLE_NOW + 2.4,
            reason="connection lost: host closed the socket",
            token_expires_at=EXAMPLE_NOW + 180,
        ),
        presence=PresenceView(),
    )


def rebuilding_state() -> DesktopState:
    """History of a stream was trimmed below the local checkpoint: the stream says so and rebuilds."""
    base = live_state()
    streams = (
        StreamView("runs", 42, 42, 1, 1, StreamPhase.LIVE),
        StreamView(
            "workers", 900, 640, 600, 1, StreamPhase.REBUILDING, TRIMMED_NOTICE, replay_from_seq=599, rebuilds=1
        ),
        StreamView("audit", 5000, 5000, 1, 1, StreamPhase.LIVE),
    )
    return replace(base, streams=streams, selected_stream="workers", log=())


EXAMPLES = {
    "desktop-live": live_state,
    "desktop-backing-off": backing_off_state,
    "desktop-rebuilding": rebuilding_state,
}
"""Example states for unit tests (fixed values); the docs' screenshots come from `RECORDED`, states of a real run."""

SIZES = ((80, 24), (120, 40))
"""Every screenshot is rendered at 80x24 (the layout designed first) and 120x40."""

RECORDED = "desktop-states.json"
"""States captured from a real run (`tests/desktop/test_desktop_screens_real.py`), next to the SVGs they render."""


def state_to_json(state: DesktopState) -> dict[str, Any]:
    """A state as JSON-ready values (enums by value), for recording real states."""
    return cast(dict[str, Any], json.loads(json.dumps(asdict(state), default=lambda o: o.value)))


def state_from_json(data: dict[str, Any]) -> DesktopState:
    """The inverse of `state_to_json`."""
    connection = dict(data["connection"], phase=ConnectionPhase(data["connection"]["phase"]))
    presence = data["presence"]
    entries = tuple(PresenceEntry(**dict(e, client_kinds=tuple(e["client_kinds"]))) for e in presence["entries"])
    return DesktopState(
        npub=data["npub"],
        host_url=data["host_url"],
        database=data["database"],
        connection=ConnectionView(**connection),
        presence=PresenceView(presence["connections"], presence["users"], entries),
        streams=tuple(StreamView(**dict(s, phase=StreamPhase(s["phase"]))) for s in data["streams"]),
        selected_stream=data["selected_stream"],
        log=tuple(LogLine(**line) for line in data["log"]),
    )


def write_recording(path: Path, states: dict[str, tuple[DesktopState, float]]) -> None:
    """Record `stem -> (state, clock at capture)` as JSON."""
    body = {stem: {"now": now, "state": state_to_json(state)} for stem, (state, now) in states.items()}
    path.write_text(json.dumps(body, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def read_recording(path: Path) -> dict[str, tuple[DesktopState, float]]:
    """The recorded states: `stem -> (state, clock to render it with)`."""
    body = json.loads(path.read_text(encoding="utf-8"))
    return {stem: (state_from_json(item["state"]), float(item["now"])) for stem, item in body.items()}


async def render_svg(
    state: DesktopState, title: str, *, size: tuple[int, int] = SIZES[1], now: float = EXAMPLE_NOW
) -> str:
    """The SVG of the UI showing `state` at `size`, from a headless pilot run with the clock at `now`."""
    app = DesktopApp(StateHub(state), clock=lambda: now)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        return app.export_screenshot(title=title)


async def render_recording(states: dict[str, tuple[DesktopState, float]]) -> dict[str, str]:
    """Every recorded state at every size, keyed by file stem (`desktop-live-80x24`)."""
    rendered = {}
    for stem, (state, now) in states.items():
        for width, height in SIZES:
            name = f"{stem}-{width}x{height}"
            rendered[name] = await render_svg(state, name, size=(width, height), now=now)
    return rendered


def write_screenshots(directory: Path) -> list[Path]:
    """Render the states recorded in `<directory>/desktop-states.json` as `<directory>/<stem>-<size>.svg`."""
    states = read_recording(directory / RECORDED)
    written = []
    for stem, svg in asyncio.run(render_recording(states)).items():
        path = directory / f"{stem}.svg"
        path.write_text(svg, encoding="utf-8")
        written.append(path)
    return written
