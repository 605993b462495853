"""`desktop --headless`: the same sync, rendered as one JSON line per state change on stdout.

For scripts and process tests: every line is a complete snapshot (no need to merge deltas), times are absolute Unix
seconds so an unchanged state prints nothing, and the selected stream's log is left out (events are in the store).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from typing import Any, TextIO

from autopilot_sync.desktop.state import DesktopState, StateHub
from autopilot_sync.desktop.state_lines import format_state_line
from autopilot_sync.desktop.sync import DesktopSync


def state_json(state: DesktopState) -> dict[str, Any]:
    """The JSON object of one state (stable keys; documented in docs/desktop.md)."""
    connection = state.connection
    return {
        "npub": state.npub,
        "host_url": state.host_url,
        "database": state.database,
        "notice": state.notice,
        "connection": {
            "phase": connection.phase.value,
            "protocol": connection.protocol,
            "attempt": connection.attempt,
            "next_retry_at": connection.next_retry_at,
            "reason": connection.reason,
            "token_expires_at": connection.token_expires_at,
            "token_fetches": connection.token_fetches,
        },
        "presence": {
            "users": state.presence.users,
            "connections": state.presence.connections,
            "npubs": [entry.npub for entry in state.presence.entries],
            "self_connections": sum(entry.connections for entry in state.presence.entries if entry.is_self),
        },
        "streams": [
            {
                "stream_id": stream.stream_id,
                "head": stream.head_seq,
                "applied": stream.applied_seq,
                "lag": stream.lag,
                "retained_from": stream.retained_from_seq,
                "epoch": stream.epoch,
                "phase": stream.phase.value,
                "notice": stream.notice,
                "replay_progress": round(stream.replay_progress, 4),
                "rebuilds": stream.rebuilds,
                "divergences": stream.divergences,
                "last_rebuild": stream.last_rebuild,
                "gaps": stream.gaps,
                "duplicates": stream.duplicates,
                "acked": stream.acked_seq,
                "acks_sent": stream.acks_sent,
            }
            for stream in state.streams
        ],
    }


class JsonLinesPrinter:
    """Prints a JSON line for every state whose JSON differs from the last one printed."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stdout
        self._last = ""
        self.lines = 0

    def __call__(self, state: DesktopState) -> None:
        body = json.dumps(state_json(state), sort_keys=True, ensure_ascii=False)
        if body == self._last:
            return
        self._last = body
        self._out.write(format_state_line(body, time.time()) + "\n")
        self._out.flush()
        self.lines += 1

    def attach(self, hub: StateHub) -> None:
        """Print the current state now and every change from here on."""
        self(hub.state)
        hub.listen(self)


async def run_headless(sync: DesktopSync) -> None:
    """Print JSON lines while `sync` runs; SIGTERM and SIGINT stop it cleanly (the host then drops our presence)."""
    stop = asyncio.Event()
    printer = JsonLinesPrinter()
    printer.attach(sync.hub)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await sync.run(stop)
