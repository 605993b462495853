"""The desktop's own commands in Textual's command palette (ctrl+p): follow, jump to seq, show/copy, verify.

Why a provider and not more keys: stream ids and seqs are values, and the palette lets the user type them. Every
command calls a `DesktopApp` action, so the same things are reachable from keys where a key makes sense.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from autopilot_sync.desktop.app import DesktopApp

_NUMBER = re.compile(r"\d{1,19}")


class DesktopCommands(Provider):
    """Commands built from the current state: its streams and the selected stream's logged events."""

    @property
    def desktop(self) -> DesktopApp:
        """The app, typed."""
        return cast("DesktopApp", self.app)

    def _commands(self, query: str) -> list[tuple[str, Callable[[], object], str]]:
        app = self.desktop
        state = app.hub.state
        found: list[tuple[str, Callable[[], object], str]] = []
        for stream in state.streams:
            found.append(
                (f"Follow stream {stream.stream_id}", partial(app.follow, stream.stream_id), "show its events")
            )
            if app.can_verify:
                found.append(
                    (
                        f"Verify integrity of stream {stream.stream_id}",
                        partial(app.run_verify, stream.stream_id),
                        "check the host's hash chain from the retained floor to the head",
                    )
                )
        number = _NUMBER.search(query)
        if number is not None:
            seq = int(number.group())
            found.append((f"Jump to seq {seq}", partial(app.jump_to_seq, seq), "in the selected stream's log"))
        lines = state.log if number is None else [line for line in state.log if str(line.seq).startswith(str(seq))]
        for line in lines[-20:]:
            found.append((f"Show event #{line.seq} ({line.kind})", partial(app.show_event, line.seq), "all fields"))
            found.append((f"Copy event #{line.seq} ({line.kind})", partial(app.copy_event, line.seq), "as JSON"))
        return found

    async def discover(self) -> Hits:
        """What the palette lists before anything is typed."""
        for title, command, help_text in self._commands(""):
            yield DiscoveryHit(title, command, help=help_text)

    async def search(self, query: str) -> Hits:
        """The commands matching `query`; a number offers "Jump to seq N" (first when the query is only the number)."""
        matcher = self.matcher(query)
        for title, command, help_text in self._commands(query):
            if query.strip().isdigit():  # a bare number: "Jump to seq N" first, then that event's commands
                score = 1.0 if title.startswith("Jump to seq") else 0.5
            else:
                score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), command, text=title, help=help_text)
