"""The desktop's modal screens: the key help (every binding, read from the app itself) and one event in detail.

Both render values only (bindings, a `LogLine`), like the rest of the UI, so they can be tested from a state.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from autopilot_sync.desktop.state import LogLine

_CLOSE = [
    Binding("escape", "dismiss", "close"),
    Binding("q", "dismiss", "close", show=False),
]

_SCREEN_CSS = """
{name} {{ align: center middle; }}
{name} > VerticalScroll {{
    width: 100%; max-width: 110; height: auto; max-height: 100%;
    border: round $accent; padding: 0 1; background: $surface;
}}
"""


def _key_name(binding: Binding) -> str:
    keys = {"question_mark": "?", "enter": "Enter", "escape": "Esc", "tab": "Tab", "up": "↑", "down": "↓"}
    return ", ".join(keys.get(k.strip(), k.strip()) for k in binding.key.split(","))


def help_text(bindings: Iterable[tuple[Binding, str]]) -> Text:
    """The help screen's body: one line per (binding, where it works), then how to leave."""
    text = Text("Keys\n\n", style="bold")
    for binding, where in bindings:
        text.append(f"{_key_name(binding):<12}", style="bold cyan")
        text.append(f"{binding.description or binding.action}")
        if where:
            text.append(f"  ({where})", style="dim")
        text.append("\n")
    text.append("\nCommands (ctrl+p): follow a stream, jump to seq N, show or copy an event, verify a stream\n")
    text.append("Esc or q closes this help", style="dim")
    return text


def payload_json(payload: str) -> str:
    """The payload pretty-printed when it is JSON, as stored otherwise."""
    try:
        return json.dumps(json.loads(payload), indent=2, sort_keys=True, ensure_ascii=False)
    except ValueError:
        return payload


def event_fields(stream_id: str, line: LogLine) -> dict[str, object]:
    """Every field of one applied event, as the detail view lists them and `copy event` copies them."""
    return {
        "stream_id": stream_id,
        "seq": line.seq,
        "epoch": line.epoch,
        "kind": line.kind,
        "idempotency_key": line.idempotency_key,
        "committed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(line.committed_at_us / 1_000_000)),
        "payload_hash": line.payload_hash,
        "chain": line.chain,
        "payload": line.payload,
    }


def event_json(stream_id: str, line: LogLine) -> str:
    """The event as one JSON document (what `copy event` puts on the clipboard), payload parsed when it is JSON."""
    fields = event_fields(stream_id, line)
    with contextlib.suppress(ValueError):
        fields["payload"] = json.loads(line.payload)
    return json.dumps(fields, indent=2, ensure_ascii=False)


def event_text(stream_id: str, line: LogLine) -> Text:
    """The detail view's body: the fields, one per line, then the payload as pretty JSON."""
    text = Text.assemble((f"Event {stream_id} #{line.seq}\n\n", "bold"))
    for name, value in event_fields(stream_id, line).items():
        if name == "payload":
            continue
        text.append(f"{name:<16}", style="dim")
        text.append(f"{value if value != '' else '—'}\n")
    text.append("\npayload\n", style="dim")
    text.append(payload_json(line.payload))
    text.append("\n\nc copy · Esc close", style="dim")
    return text


class HelpScreen(ModalScreen[None]):
    """Every binding of the app and of its panes."""

    DEFAULT_CSS = _SCREEN_CSS.format(name="HelpScreen")
    BINDINGS = [*_CLOSE, Binding("question_mark", "dismiss", "close", show=False)]

    def __init__(self, body: Text) -> None:
        super().__init__()
        self._body = body

    def compose(self) -> ComposeResult:
        """The help text in a scrollable box."""
        with VerticalScroll():
            yield Static(self._body, id="help-body")


class EventScreen(ModalScreen[None]):
    """One event in full; `c` copies it."""

    DEFAULT_CSS = _SCREEN_CSS.format(name="EventScreen")
    BINDINGS = [*_CLOSE, Binding("c", "copy", "copy")]

    def __init__(self, stream_id: str, line: LogLine) -> None:
        super().__init__()
        self.stream_id = stream_id
        self.line = line

    def compose(self) -> ComposeResult:
        """The fields and the payload in a scrollable box."""
        with VerticalScroll():
            yield Static(event_text(self.stream_id, self.line), id="event-body")

    def action_copy(self) -> None:
        """Copy the event as JSON."""
        self.app.copy_to_clipboard(event_json(self.stream_id, self.line))
        self.notify(f"copied {self.stream_id} #{self.line.seq}")
