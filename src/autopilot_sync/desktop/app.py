"""The Textual UI: renders a `DesktopState` and nothing else, so it can be tested and screenshotted from a value.

Panes: connection (state, protocol, token expiry, own npub), presence (users, connections, npubs with your own key
marked), streams (head, applied, lag, replay progress, notices such as "history trimmed — rebuilding"), the live
event log of the selected stream, and the keys on screen; a help screen, an event detail view and the command
palette's own commands (`commands.py`). What it sends back: which stream is selected, and integrity checks to run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.css.query import NoMatches
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from autopilot_sync.desktop.commands import DesktopCommands
from autopilot_sync.desktop.integrity import verify_stream
from autopilot_sync.desktop.screens import EventScreen, HelpScreen, event_json, help_text
from autopilot_sync.desktop.state import ConnectionPhase, DesktopState, LogLine, StateHub, StreamPhase, StreamView
from autopilot_sync.desktop.sync import DesktopSync

WIDE_COLUMNS = 100
"""From this width on, the presence pane and the replay progress bar are shown; below it the 80-column layout."""

NARROW_ID = 30
"""Stream ids are cut (in the middle; the log's title has the selected one whole) to no less than this to fit."""

PRESENCE_WIDTH = 32
"""Columns of the presence pane in the wide layout."""

PAYLOAD_CELL = 200
"""Characters of a payload the log shows (the detail view shows all)."""

_PHASE_STYLE = {
    ConnectionPhase.CONNECTING: ("◌ connecting", "yellow"),
    ConnectionPhase.LIVE: ("● live", "green"),
    ConnectionPhase.BACKING_OFF: ("◔ backing off", "yellow"),
    ConnectionPhase.OFFLINE: ("○ offline", "red"),
}

_STREAM_STYLE = {
    StreamPhase.WAITING: "dim",
    StreamPhase.REPLAYING: "yellow",
    StreamPhase.LIVE: "green",
    StreamPhase.RESUBSCRIBING: "yellow",
    StreamPhase.REBUILDING: "bold red",
    StreamPhase.HALTED: "bold red",
    StreamPhase.IDLE: "dim",
}

_STREAM_COLUMNS = ("stream", "head", "applied", "lag", "replay", "status")
_NARROW_COLUMNS = ("stream", "head", "applied", "lag", "status")


def _in(seconds: float) -> str:
    """`4m 12s` / `3.2s` / `now`, for times relative to the clock."""
    if seconds <= 0:
        return "now"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m {secs:02d}s"


def _short_npub(npub: str) -> str:
    return f"{npub[:12]}…{npub[-6:]}" if len(npub) > 24 else npub


def connection_text(state: DesktopState, now: float, *, narrow: bool = False) -> Text:
    """The connection line: state (with next retry or offline reason), protocol, token expiry, own key.

    `narrow` (under `WIDE_COLUMNS`): the presence pane is hidden, so its counts join the first line, and the key and
    host are shortened to fit 80 columns.
    """
    view = state.connection
    label, style = _PHASE_STYLE[view.phase]
    text = Text.assemble((label, f"bold {style}"))
    if narrow:
        text.append(f" · {state.presence.users} users · {state.presence.connections} connections", style="dim")
    if view.phase is ConnectionPhase.BACKING_OFF and view.next_retry_at is not None:
        text.append(f" (attempt {view.attempt}, next retry in {_in(view.next_retry_at - now)})")
    if view.reason and view.phase is not ConnectionPhase.LIVE:
        text.append(f" — {view.reason}", style="italic")
    if state.notice:
        text.append(f" — {state.notice}", style="bold red")
    text.append("\nprotocol ", style="dim")
    text.append(view.protocol or "—")
    text.append("   token expires ", style="dim")
    text.append(_in(view.token_expires_at - now) if view.token_expires_at is not None else "—")
    text.append("\n")
    text.append("you ", style="dim")
    text.append((_short_npub(state.npub) if narrow else state.npub) or "—", style="bold cyan")
    text.append("   host ", style="dim")
    text.append(f"{state.host_url} / {state.database}")
    return text


def presence_text(state: DesktopState) -> Text:
    """The presence pane: counts, then one line per connected key, yours marked."""
    view = state.presence
    text = Text.assemble(
        ("Presence\n", "bold"),
        (f"{view.users}", "bold"),
        (" users · ", "dim"),
        (f"{view.connections}", "bold"),
        (" connections\n\n", "dim"),
    )
    for entry in view.entries:
        text.append("★ " if entry.is_self else "• ", style="bold cyan" if entry.is_self else "")
        text.append(_short_npub(entry.npub) if entry.npub else entry.pubkey_hex[:16] or "(no key)")
        if entry.connections > 1:
            text.append(f" x{entry.connections}", style="dim")
        if entry.is_self:
            text.append(" (you)", style="cyan")
        text.append("\n")
    if not view.entries:
        text.append("nobody connected", style="dim")
    return text


def _progress(stream: StreamView) -> str:
    if stream.phase in (StreamPhase.WAITING, StreamPhase.IDLE):
        return "—"
    share = stream.replay_progress
    filled = round(share * 10)
    return f"{'█' * filled}{'░' * (10 - filled)} {share * 100:3.0f}%"


def fit_id(stream_id: str, width: int) -> str:
    """`stream_id` cut in the middle to `width` (start and end are what tell streams apart: kind and id)."""
    if len(stream_id) <= width:
        return stream_id
    head = (width - 1) // 2
    return f"{stream_id[:head]}…{stream_id[-(width - 1 - head) :]}"


def _status(stream: StreamView, *, narrow: bool, notices: bool) -> str:
    status = stream.notice if stream.notice and notices else stream.phase.value
    if narrow and stream.phase in (StreamPhase.REPLAYING, StreamPhase.REBUILDING) and stream.lag:
        status = f"{status} {stream.replay_progress * 100:.0f}%"
    return status


def stream_cells(
    stream: StreamView, *, narrow: bool = False, id_width: int | None = None, notices: bool = True
) -> tuple[str | Text, ...]:
    """One row of the streams table.

    `narrow` (80 columns): no progress bar, the status is the phase with the replay percentage. `id_width` cuts the
    id in the middle; without `notices` the status is the phase and the notice (why a stream rebuilds or stopped)
    shows under the event log of the selected stream instead.
    """
    cells: list[str | Text] = [
        fit_id(stream.stream_id, id_width) if id_width else stream.stream_id,
        str(stream.head_seq),
        str(stream.applied_seq),
        Text(str(stream.lag), style="bold yellow" if stream.lag else "green"),
    ]
    if not narrow:
        cells.append(_progress(stream))
    cells.append(Text(_status(stream, narrow=narrow, notices=notices), style=_STREAM_STYLE[stream.phase]))
    return tuple(cells)


def stream_layout(streams: Sequence[StreamView], table_width: int, *, narrow: bool) -> tuple[int, bool]:
    """(id width, whether notices fit) so that every column shows in `table_width` cells.

    Notices show in the status column when they fit next to ids of at least `NARROW_ID` characters; otherwise the
    status is the phase (the selected stream's notice shows under its event log).
    """
    fixed = 2 * (5 if narrow else 6) + 6 + 7 + 5 + (0 if narrow else 16)
    longest_id = max((len(s.stream_id) for s in streams), default=6)

    def status_width(notices: bool) -> int:
        return max((len(_status(s, narrow=narrow, notices=notices)) for s in streams), default=6)

    for notices in (True, False):
        id_width = table_width - fixed - status_width(notices)
        if id_width >= min(longest_id, NARROW_ID):
            return max(id_width, 6), notices
    return max(table_width - fixed - status_width(False), 12), False


def log_cells(line: LogLine) -> tuple[str | Text, ...]:
    """One row of the event log: seq, commit time, kind, payload (cut; the detail view shows all of it)."""
    stamp = time.strftime("%H:%M:%S", time.gmtime(line.committed_at_us / 1_000_000))
    payload = line.payload if len(line.payload) <= PAYLOAD_CELL else line.payload[: PAYLOAD_CELL - 1] + "…"
    return (Text(str(line.seq), style="bold"), Text(stamp, style="dim"), Text(line.kind, style="magenta"), payload)


PANE_KEYS = [
    Binding("tab", "focus_next", "switch between the streams and the events pane"),
    Binding("up,down", "cursor", "move in the focused pane (in streams: choose the stream whose events show)"),
    Binding("enter", "select", "on an event: show all its fields"),
    Binding("ctrl+p", "command_palette", "command palette"),
]
"""Keys the panes and Textual provide, listed on the help screen with the app's own."""


class DesktopApp(App[None]):
    """The desktop window; `hub` supplies states, `on_select` hears which stream the user picked, `verify` checks one.

    The layout is designed for 80x24 first: under `WIDE_COLUMNS` columns the presence pane folds into the connection
    line and the streams table drops its progress bar, so stream, head, applied, lag and status stay readable.
    """

    TITLE = "autopilot-sync desktop"
    COMMANDS = App.COMMANDS | {DesktopCommands}
    CSS = """
    #connection { height: 5; padding: 0 1; border: round $accent; }
    #middle { height: 1fr; min-height: 6; }
    #presence { width: 32; height: 100%; padding: 0 1; border: round $accent; }
    #stream-table { width: 1fr; height: 100%; border: round $accent; }
    #log-table { height: 1fr; border: round $accent; }
    #status { height: 1; padding: 0 1; color: $text-muted; }
    #status.error { color: $error; }
    .narrow #presence { display: none; }
    """
    BINDINGS = [
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),  # what README promises, not Textual's ctrl+q
        Binding("question_mark", "help", "help"),
        Binding("c", "copy_highlighted", "copy event"),
        Binding("v", "verify_selected", "verify stream"),
    ]

    def __init__(
        self,
        hub: StateHub,
        *,
        on_select: Callable[[str], None] | None = None,
        verify: Callable[[str], Awaitable[str]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.hub = hub
        self._on_select = on_select
        self._verify = verify
        self._clock = clock
        self._stop_listening: Callable[[], None] | None = None
        self._row_order: tuple[str, ...] = ()
        self._narrow: bool | None = None
        self._stream_layout: tuple[int, bool] = (0, True)
        self._main_screen: Screen[Any] | None = None
        self.verdicts: dict[str, str] = {}
        """The last integrity verdict per stream (also shown as a notification)."""

    @property
    def _main(self) -> Screen[Any]:
        """The screen with the panes (not the help or event screen that may be on top of it)."""
        return self._main_screen if self._main_screen is not None else self.screen

    @property
    def can_verify(self) -> bool:
        """Whether this desktop can run the integrity check (it needs the host connection)."""
        return self._verify is not None

    def compose(self) -> ComposeResult:
        """The panes, top to bottom."""
        yield Header()
        yield Static(id="connection")
        with Horizontal(id="middle"):
            yield Static(id="presence")
            yield DataTable(id="stream-table", cursor_type="row", zebra_stripes=True)
        yield DataTable(id="log-table", cursor_type="row")
        yield Static(id="status")
        yield Footer()

    def on_mount(self) -> None:
        """Lay out for the width, draw the current state, follow the hub, tick relative times."""
        self._main_screen = self.screen  # the panes live here; a help or event screen may be on top when states arrive
        self._layout_for_width()
        self.render_state(self.hub.state)
        self._stop_listening = self.hub.listen(self.render_state)
        self._main.query_one("#stream-table", DataTable).focus()  # ↑/↓ choose a stream first
        self.set_interval(1.0, self._tick)

    def _tick(self) -> None:
        """Relative times move on; nothing to draw once the panes are gone (the app is closing)."""
        with contextlib.suppress(NoMatches):
            self._render_connection(self.hub.state)

    def on_unmount(self) -> None:
        """Stop following the hub."""
        if self._stop_listening is not None:
            self._stop_listening()

    def on_resize(self) -> None:
        """Switch between the 80-column and the wide layout."""
        if self._layout_for_width():
            self.render_state(self.hub.state)

    def _layout_for_width(self) -> bool:
        """Apply the layout for the current width; True when it changed."""
        narrow = self.size.width < WIDE_COLUMNS
        if narrow == self._narrow:
            return False
        if self._narrow is None:  # first layout (a resize can come before mount ends)
            log = self._main.query_one("#log-table", DataTable)
            for column in ("seq", "time", "kind", "payload"):
                log.add_column(column, key=column)
        self._narrow = narrow
        self._main.set_class(narrow, "narrow")
        table = self._main.query_one("#stream-table", DataTable)
        table.clear(columns=True)
        for column in _NARROW_COLUMNS if narrow else _STREAM_COLUMNS:
            table.add_column(column, key=column)
        self._row_order = ()
        return True

    def render_state(self, state: DesktopState) -> None:
        """Redraw every pane from `state`."""
        self._render_connection(state)
        self._main.query_one("#presence", Static).update(presence_text(state))
        self._render_streams(state)
        self._render_log(state)

    def _render_connection(self, state: DesktopState) -> None:
        text = connection_text(state, self._clock(), narrow=bool(self._narrow))
        self._main.query_one("#connection", Static).update(text)

    def _render_streams(self, state: DesktopState) -> None:
        table = self._main.query_one("#stream-table", DataTable)
        narrow = bool(self._narrow)
        columns = _NARROW_COLUMNS if narrow else _STREAM_COLUMNS
        table_width = self.size.width - (0 if narrow else PRESENCE_WIDTH) - 4  # borders and the scrollbar
        id_width, notices = stream_layout(state.streams, table_width, narrow=narrow)

        def cells(stream: StreamView) -> tuple[str | Text, ...]:
            return stream_cells(stream, narrow=narrow, id_width=id_width, notices=notices)

        order = tuple(stream.stream_id for stream in state.streams)
        if order != self._row_order or (id_width, notices) != self._stream_layout:
            table.clear()
            for stream in state.streams:
                table.add_row(*cells(stream), key=stream.stream_id)
            self._row_order = order
            self._stream_layout = (id_width, notices)
            if state.selected_stream in order:
                table.move_cursor(row=order.index(state.selected_stream))
            return
        for stream in state.streams:
            for column, cell in zip(columns, cells(stream), strict=True):
                table.update_cell(stream.stream_id, column, cell, update_width=True)

    def _render_log(self, state: DesktopState) -> None:
        """The selected stream's events, newest last; the cursor stays on its event, or follows the tail."""
        table = self._main.query_one("#log-table", DataTable)
        table.border_title = f"Events {state.selected_stream or '(no stream selected)'}"
        selected = state.stream(state.selected_stream)
        notice = selected.notice if selected is not None else ""
        table.border_subtitle = notice or ("" if state.log else "no events applied yet")
        keys = [str(line.seq) for line in state.log]
        current = self._highlighted_key(table)
        at_tail = table.row_count == 0 or table.cursor_row >= table.row_count - 1
        table.clear()
        for line in state.log:
            table.add_row(*log_cells(line), key=str(line.seq))
        if not keys:
            return
        row = len(keys) - 1 if at_tail or current not in keys else keys.index(current)
        table.move_cursor(row=row, animate=False)

    @staticmethod
    def _highlighted_key(table: DataTable[Any]) -> str | None:
        if not table.is_valid_coordinate(table.cursor_coordinate):
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def _line(self, seq: int) -> LogLine | None:
        return next((line for line in self.hub.state.log if line.seq == seq), None)

    # ----- events from the panes -----

    def on_data_table_row_highlighted(self, message: DataTable.RowHighlighted) -> None:
        """The highlighted stream is the selected one: its events go to the log pane."""
        if message.data_table.id != "stream-table":
            return
        key = message.row_key.value
        if key is not None:
            self.follow(key)

    def on_data_table_row_selected(self, message: DataTable.RowSelected) -> None:
        """Enter on an event opens its detail view."""
        if message.data_table.id == "log-table" and message.row_key.value is not None:
            self.show_event(int(message.row_key.value))

    # ----- actions (keys and the command palette) -----

    def say(self, message: str, *, severity: SeverityLevel = "information", timeout: float = 5) -> None:
        """Answer an action on the status line (stays until the next answer) and as a notification."""
        status = self._main.query_one("#status", Static)
        status.update(message)
        status.set_class(severity == "error", "error")
        self.notify(message, severity=severity, timeout=timeout)

    def follow(self, stream_id: str) -> None:
        """Show `stream_id`'s events in the log pane."""
        if self._on_select is not None and stream_id != self.hub.state.selected_stream:
            self._on_select(stream_id)

    def jump_to_seq(self, seq: int) -> None:
        """Put the log cursor on event `seq` of the selected stream (it must be among the logged events)."""
        keys = [line.seq for line in self.hub.state.log]
        if seq not in keys:
            span = f"{keys[0]}..{keys[-1]}" if keys else "none"
            self.say(f"seq {seq} is not in the log (it holds {span})", severity="warning")
            return
        table = self._main.query_one("#log-table", DataTable)
        table.move_cursor(row=keys.index(seq), animate=False)
        table.focus()

    def show_event(self, seq: int) -> None:
        """Open the detail view of event `seq` of the selected stream."""
        line = self._line(seq)
        if line is None:
            self.say(f"seq {seq} is not in the log", severity="warning")
            return
        self.push_screen(EventScreen(self.hub.state.selected_stream, line))

    def copy_event(self, seq: int) -> None:
        """Copy event `seq` of the selected stream to the clipboard, as JSON with every field."""
        line = self._line(seq)
        if line is None:
            self.say(f"seq {seq} is not in the log", severity="warning")
            return
        self.copy_to_clipboard(event_json(self.hub.state.selected_stream, line))
        self.say(f"copied {self.hub.state.selected_stream} #{seq}")

    def run_verify(self, stream_id: str) -> None:
        """Check `stream_id`'s hash chain on the host in the background; the verdict shows as a notification."""
        verify = self._verify
        if verify is None:
            self.say("integrity check needs a host connection", severity="warning")
            return

        async def check() -> None:
            self.say(f"verifying {stream_id}…", timeout=3)
            verdict = await verify(stream_id)
            self.verdicts[stream_id] = verdict
            self.say(verdict, severity="information" if verdict.startswith("OK") else "error", timeout=15)

        self.run_worker(check(), group="verify")

    def action_help(self) -> None:
        """Show every binding."""
        bindings = [(b, "") for b in [*self.BINDINGS, *PANE_KEYS] if isinstance(b, Binding)]
        bindings += [(b, "event detail") for b in EventScreen.BINDINGS if isinstance(b, Binding)]
        self.push_screen(HelpScreen(help_text(bindings)))

    def action_copy_highlighted(self) -> None:
        """Copy the event under the log cursor."""
        key = self._highlighted_key(self._main.query_one("#log-table", DataTable))
        if key is None:
            self.say("no event to copy", severity="warning")
            return
        self.copy_event(int(key))

    def action_verify_selected(self) -> None:
        """Verify the selected stream."""
        if self.hub.state.selected_stream:
            self.run_verify(self.hub.state.selected_stream)


async def run_app(sync: DesktopSync) -> None:
    """The interactive desktop: the UI in front, sync behind it; quitting the UI stops sync cleanly."""
    stop = asyncio.Event()

    async def verify(stream_id: str) -> str:
        current = sync.tokens.current
        state = sync.hub.state
        return await verify_stream(state.host_url, state.database, stream_id, current.token if current else None)

    app = DesktopApp(sync.hub, on_select=sync.select, verify=verify)
    runner = asyncio.create_task(sync.run(stop))
    try:
        await app.run_async()
    finally:
        stop.set()
        await runner
