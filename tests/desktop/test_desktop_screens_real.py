"""The docs' screenshots come from a real run: host, control, runtime and `runtime demo` as processes, a desktop's
sync against them, and the `DesktopState`s it reaches recorded (live, backing off, rebuilding after a trim).

The same test drives the UI on the live state: the palette's integrity check runs `verify-stream`'s audit against
the real host and shows OK. With `AUTOPILOT_SYNC_WRITE_SCREENSHOTS=1` it rewrites docs/images/desktop-states.json
(then run `autopilot-sync desktop screenshots`); otherwise it checks that what it captured renders like the recording.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from desktop_stack import InProcessDesktop, Stack, running_stack
from test_desktop_ui import DOCS_IMAGES, screen_text

from autopilot_sync.desktop.app import DesktopApp
from autopilot_sync.desktop.integrity import verify_stream
from autopilot_sync.desktop.rebuild import TRIMMED_NOTICE
from autopilot_sync.desktop.screenshots import RECORDED, read_recording, render_recording, write_recording
from autopilot_sync.desktop.state import ConnectionPhase, DesktopState, StreamPhase
from autopilot_sync.devtools.processes import start_service
from autopilot_sync.devtools.stack import DATABASE


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path) as running:
        yield running


def _caught_up(state: DesktopState) -> bool:
    return (
        state.connection.phase is ConnectionPhase.LIVE
        and len(state.streams) >= 2
        and all(s.phase is StreamPhase.LIVE for s in state.streams)
        and bool(state.log)
        and state.presence.connections >= 2
    )


async def test_screenshots_render_states_captured_from_a_real_run(stack: Stack, tmp_path: Path) -> None:
    demo = start_service(
        "runtime",
        [
            *("demo", "--url", stack.runtime_url, "--socket", str(stack.producer_socket)),
            *("--runs", "2", "--workers", "2", "--rate", "40", "--duration", "20", "--seed", "7"),
        ],
        wait=False,
    )
    assert demo.process.wait(60) == 0, demo.tail(30)
    desktop = InProcessDesktop(stack, tmp_path / "desktop")
    try:
        await desktop.wait_for("the demo's streams", lambda s: any(".run." in x.stream_id for x in s.streams))
        run_stream = next(s.stream_id for s in desktop.sync.hub.state.streams if ".run." in s.stream_id)
        desktop.sync.select(run_stream)
        live = await desktop.wait_for("every stream caught up", _caught_up)
        live_now = time.time()

        # the palette's integrity check, against the real host the desktop is connected to
        token = desktop.sync.tokens.current
        assert token is not None

        async def verify(stream_id: str) -> str:
            return await verify_stream(stack.host_url, DATABASE, stream_id, token.token)

        app = DesktopApp(desktop.sync.hub, on_select=desktop.sync.select, verify=verify)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            app.run_verify(run_stream)
            for _ in range(100):
                await pilot.pause(0.1)
                if run_stream in app.verdicts:
                    break
            assert app.verdicts[run_stream].startswith(f"OK {run_stream}: seq 1..")
            assert f"OK {run_stream}" in screen_text(app)

        # the host goes away: backing off, next retry shown
        assert stack.host is not None
        stack.host.stop()
        backing_off = await desktop.wait_for(
            "backing off", lambda s: s.connection.phase is ConnectionPhase.BACKING_OFF and s.connection.next_retry_at
        )
        backing_off_now = time.time()
        await desktop.close()

        # history trimmed above the desktop's checkpoint while it was away: it rebuilds from the floor
        stack.start_host()
        run_id = run_stream.split(".run.", 1)[1].rsplit(".events", 1)[0]
        head = next(s for s in live.streams if s.stream_id == run_stream).head_seq
        await stack.append_run_events(run_id, 30)
        for attempt in range(100):  # the runtime publishes from its outbox once it reaches the restarted host
            try:
                await stack.call_as_admin("trim_stream", run_stream, head + 20)
                break
            except AssertionError:
                if attempt == 99:
                    raise
                await asyncio.sleep(0.3)
        desktop = InProcessDesktop(stack, tmp_path / "desktop", select=run_stream)
        rebuilding = await desktop.wait_for(
            "the rebuild",
            lambda s: (
                s.selected_stream == run_stream and any(x.phase is StreamPhase.REBUILDING and x.lag for x in s.streams)
            ),
        )
        rebuilding_now = time.time()
        await desktop.wait_for("the rebuild done", lambda s: all(x.phase is StreamPhase.LIVE for x in s.streams))
    finally:
        await desktop.close()

    assert live.connection.protocol.startswith("v3"), live.connection.protocol
    assert any(s.notice == TRIMMED_NOTICE for s in rebuilding.streams)
    captured = {
        "desktop-live": (live, live_now),
        "desktop-backing-off": (backing_off, backing_off_now),
        "desktop-rebuilding": (rebuilding, rebuilding_now),
    }
    rendered = await render_recording(captured)
    for name in ("desktop-live-80x24", "desktop-live-120x40"):
        assert run_stream[:20] in rendered[name] and "live" in rendered[name]
    if os.environ.get("AUTOPILOT_SYNC_WRITE_SCREENSHOTS") == "1":
        write_recording(DOCS_IMAGES / RECORDED, captured)
    recorded = read_recording(DOCS_IMAGES / RECORDED)
    assert set(recorded) == set(captured)
    for stem, (state, _) in recorded.items():  # the recording is of the same kind of run
        assert state.connection.protocol == captured[stem][0].connection.protocol
        assert {s.stream_id.split(".")[1] for s in state.streams} == {
            s.stream_id.split(".")[1] for s in captured[stem][0].streams
        }
