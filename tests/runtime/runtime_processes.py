"""Real host + real control + real runtime as child processes, on fixed ports so each can be killed and restarted.

Also a reader that checks what the host holds through the client SDK (a one-off query over the WebSocket), the
same way any subscriber would see it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autopilot_sync.client.connection import connect
from autopilot_sync.control.client import fetch_session_token
from autopilot_sync.devtools.stack import DATABASE, LocalStack
from autopilot_sync.settings.environment import service_environment
from autopilot_sync.settings.runtime import RuntimeSettings


class System(LocalStack):
    """The three services of the publishing path; retries capped at 1 s so crash tests converge quickly."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, runtime_env=service_environment(RuntimeSettings, {"retry_cap_seconds": 1}))

    def stop_all(self, *, kill: bool = True) -> None:
        """Tests stop the path the way it crashes: SIGKILL."""
        super().stop_all(kill=kill)


async def host_events(system: System, stream_ids: Sequence[str]) -> dict[str, list[tuple[Any, ...]]]:
    """`(seq, idempotency_key, kind, payload_hash)` of each stream's `sync_event` rows on the host, in seq order.

    Read as one of the stack's users, whom the runtime made a reader of every stream it publishes.
    """
    grant = await fetch_session_token(system.control_url, system.user_keys[0], ("sync.subscribe",), None, None, "test")
    connection = await connect(system.host_url, DATABASE, token=grant.token)
    try:
        found: dict[str, list[tuple[Any, ...]]] = {}
        for stream_id in stream_ids:
            answer = await connection.one_off_query(f"SELECT * FROM sync_event WHERE stream_id = '{stream_id}'")
            rows = [(row[1], row[2], row[3], row[5]) for row in answer.rows("sync_event")]
            found[stream_id] = sorted(rows)
        return found
    finally:
        await connection.close()
