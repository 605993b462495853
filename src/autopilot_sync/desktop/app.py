"""The Textual UI: renders a `DesktopState` and nothing else, so it can be tested and screenshotted from a value.

Panes: connection (state, protocol, token expiry, own npub), presence (users, connections, npubs with your own key
marked), streams (head, applied, lag, replay progress, notices such as "history trimmed — rebuilding"), the live
event log of the selected stream, and the keys on screen. The only thing it sends back is which stream is selected.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Header, Static

from autopilot_sync.desktop.state import LOG_LINES, ConnectionPhase, DesktopState, StateHub, StreamPhase, StreamView
from autopilot_sync.desktop.sync import DesktopSync

HELP_TEXT = "↑/↓ choose a stream (its events show in the log below) · ? toggle this help · q quit"

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
}

_STREAM_COLUMNS = ("stream", "head", "applied", "lag", "replay", "status")


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


def connection_text(state: DesktopState, now: float) -> Text:
    """The connection line: state (with next retry or offline reason), protocol, token expiry, own key."""
    view = state.connection
    label, style = _PHASE_STYLE[view.phase]
    text = Text.assemble((label, f"bold {style}"))
    if view.phase is ConnectionPhase.BACKING_OFF and view.next_retry_at is not None:
        text.append(f" (attempt {view.attempt}, next retry in {_in(view.next_retry_at - now)})")
    if view.reason and view.phase is not ConnectionPhase.LIVE:
        text.append(f" — {view.reason}", style="italic")
    text.append("\nprotocol ", style="dim")
    text.append(view.protocol or "—")
    text.append("   token expires ", style="dim")
    text.append(_in(view.token_expires_at - now) if view.token_expires_at is not None else "—")
    text.append("\n")
    text.append("you ", style="dim")
    text.append(state.npub or "—", style="bold cyan")
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
    if stream.phase is StreamPhase.WAITING:
        return "—"
    share = stream.replay_progress
    filled = round(share * 10)
    return f"{'█' * filled}{'░' * (10 - filled)} {share * 100:3.0f}%"


def stream_cells(stream: StreamView) -> tuple[str | Text, ...]:
    """One row of the streams table."""
    status = stream.notice or stream.phase.value
    return (
        stream.stream_id,
        str(stream.head_seq),
        str(stream.applied_seq),
        Text(str(stream.lag), style="bold yellow" if stream.lag else "green"),
        _progress(stream),
        Text(status, style=_STREAM_STYLE[stream.phase]),
    )


def log_text(state: DesktopState, limit: int = 200) -> Text:
    """The live event log of the selected stream, newest last."""
    text = Text.assemble(("Events ", "bold"), (state.selected_stream or "(no stream selected)", "cyan"), "\n")
    for line in state.log[-limit:]:
        stamp = time.strftime("%H:%M:%S", time.gmtime(line.committed_at_us / 1_000_000))
        text.append(f"{line.seq:>6} ", style="bold")
        text.append(f"{stamp} ", style="dim")
        text.append(f"{line.kind:<18} ", style="magenta")
        text.append(line.payload[:200] + "\n")
    if not state.log:
        text.append("no events applied yet", style="dim")
    return text


class DesktopApp(App[None]):
    """The desktop window; `hub` supplies states, `on_select` hears which stream the user picked."""

    TITLE = "autopilot-sync desktop"
    CSS = """
    #connection { height: 5; padding: 0 1; border: round $accent; }
    #middle { height: 1fr; }
    #presence { width: 40; height: 100%; padding: 0 1; border: round $accent; }
    #streams { width: 1fr; border: round $accent; }
    #log { height: 1fr; padding: 0 1; border: round $accent; }
    #help { height: 1; padding: 0 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),  # what README promises, not Textual's ctrl+q
        Binding("question_mark", "toggle_help", "help"),
        Binding("up", "cursor_up", "prev stream", show=False),
        Binding("down", "cursor_down", "next stream", show=False),
    ]

    def __init__(
        self,
        hub: StateHub,
        *,
        on_select: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.hub = hub
        self._on_select = on_select
        self._clock = clock
        self._stop_listening: Callable[[], None] | None = None
        self._row_order: tuple[str, ...] = ()

    def compose(self) -> ComposeResult:
        """The panes, top to bottom."""
        yield Header()
        yield Static(id="connection")
        with Horizontal(id="middle"):
            yield Static(id="presence")
            with Vertical(id="streams"):
                yield DataTable(id="stream-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="log")
        yield Static(HELP_TEXT, id="help")
        yield Footer()

    def on_mount(self) -> None:
        """Draw the current state, follow the hub, and tick relative times (retry countdown, token expiry)."""
        table = self.query_one("#stream-table", DataTable)
        for column in _STREAM_COLUMNS:
            table.add_column(column, key=column)
        self.render_state(self.hub.state)
        self._stop_listening = self.hub.listen(self.render_state)
        self.call_after_refresh(lambda: self._render_log(self.hub.state))
        self.set_interval(1.0, lambda: self._render_connection(self.hub.state))

    def on_unmount(self) -> None:
        """Stop following the hub."""
        if self._stop_listening is not None:
            self._stop_listening()

    def render_state(self, state: DesktopState) -> None:
        """Redraw every pane from `state`."""
        self._render_connection(state)
        self.query_one("#presence", Static).update(presence_text(state))
        self._render_streams(state)
        self._render_log(state)

    def _render_log(self, state: DesktopState) -> None:
        log = self.query_one("#log", Static)
        rows = log.content_size.height
        log.update(log_text(state, limit=rows - 1 if rows > 1 else LOG_LINES))

    def on_resize(self) -> None:
        """The log shows as many of the newest events as fit."""
        self.call_after_refresh(lambda: self._render_log(self.hub.state))

    def _render_connection(self, state: DesktopState) -> None:
        self.query_one("#connection", Static).update(connection_text(state, self._clock()))

    def _render_streams(self, state: DesktopState) -> None:
        table = self.query_one("#stream-table", DataTable)
        order = tuple(stream.stream_id for stream in state.streams)
        if order != self._row_order:
            table.clear()
            for stream in state.streams:
                table.add_row(*stream_cells(stream), key=stream.stream_id)
            self._row_order = order
            if state.selected_stream in order:
                table.move_cursor(row=order.index(state.selected_stream))
            return
        for stream in state.streams:
            for column, cell in zip(_STREAM_COLUMNS, stream_cells(stream), strict=True):
                table.update_cell(stream.stream_id, column, cell, update_width=True)

    def on_data_table_row_highlighted(self, message: DataTable.RowHighlighted) -> None:
        """The highlighted stream is the selected one: its events go to the log pane."""
        key = message.row_key.value
        if key is not None and self._on_select is not None and key != self.hub.state.selected_stream:
            self._on_select(key)

    def action_cursor_up(self) -> None:
        """Select the previous stream."""
        self.query_one("#stream-table", DataTable).action_cursor_up()

    def action_cursor_down(self) -> None:
        """Select the next stream."""
        self.query_one("#stream-table", DataTable).action_cursor_down()

    def action_toggle_help(self) -> None:
        """Show or hide the key help line."""
        help_line = self.query_one("#help", Static)
        help_line.display = not help_line.display


async def run_app(sync: DesktopSync) -> None:
    """The interactive desktop: the UI in front, sync behind it; quitting the UI stops sync cleanly."""
    stop = asyncio.Event()
    app = DesktopApp(sync.hub, on_select=sync.select)
    runner = asyncio.create_task(sync.run(stop))
    try:
        await app.run_async()
    finally:
        stop.set()
        await runner
