"""The screenshots in docs/desktop.md: the real UI rendering example states in a headless pilot run, saved as SVG.

`autopilot-sync desktop screenshots` regenerates them, so the docs always show what the current code draws. The
states are fixed values (fixed clock too), so the files only change when the UI does.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

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

SIZE = (120, 36)


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
"""Screenshot file stem → the state it shows."""


async def render_svg(state: DesktopState, title: str) -> str:
    """The SVG of the UI showing `state`, from a headless pilot run."""
    app = DesktopApp(StateHub(state), clock=lambda: EXAMPLE_NOW)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        return app.export_screenshot(title=title)


async def render_examples() -> dict[str, str]:
    """Every example's SVG, keyed by file stem."""
    return {stem: await render_svg(build(), stem) for stem, build in EXAMPLES.items()}


def write_screenshots(directory: Path) -> list[Path]:
    """Write every example as `<directory>/<stem>.svg`; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, svg in asyncio.run(render_examples()).items():
        path = directory / f"{stem}.svg"
        path.write_text(svg, encoding="utf-8")
        written.append(path)
    return written
