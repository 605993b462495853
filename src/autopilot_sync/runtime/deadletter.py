"""Operator access to dead letters: list them and replay them, through the running runtime or its outbox file.

Through the API is the normal path (the publisher wakes at once). `--data-dir` opens the outbox file directly, for
when the runtime is down; a replay made that way is picked up when the runtime next starts or polls.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from autopilot_sync.runtime.access import producer_session
from autopilot_sync.runtime.outbox import DeadLetter, Outbox
from autopilot_sync.runtime.store import OUTBOX_FILE, now_us


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    """A dead letter as operators see it (from the API's JSON or the outbox file)."""

    id: int
    stream_id: str
    seq: int
    retry_class: str
    reason: str
    dead_at_us: int
    replayed_at_us: int | None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> DeadLetterRow:
        """Parse one entry of `GET /v1/dead-letters`."""
        return cls(
            int(body["id"]),
            str(body["stream_id"]),
            int(body["seq"]),
            str(body["retry_class"]),
            str(body["reason"]),
            int(body["dead_at_us"]),
            None if body.get("replayed_at_us") is None else int(body["replayed_at_us"]),
        )

    @classmethod
    def from_stored(cls, dead: DeadLetter) -> DeadLetterRow:
        """Convert a row read from the outbox file."""
        return cls(
            dead.id, dead.stream_id, dead.seq, dead.retry_class, dead.reason, dead.dead_at_us, dead.replayed_at_us
        )

    def line(self) -> str:
        """One line for a terminal."""
        state = "open" if self.replayed_at_us is None else "replayed"
        return f"#{self.id} {self.stream_id} seq={self.seq} class={self.retry_class} {state}: {self.reason}"


def _session(access: ApiAccess) -> aiohttp.ClientSession:
    headers = {"Authorization": f"Bearer {access.token}"} if access.token else None
    return producer_session(access.socket_path, timeout=aiohttp.ClientTimeout(total=10), headers=headers)


@dataclass(frozen=True, slots=True)
class ApiAccess:
    """How an operator command reaches the API: the producer socket, or a token with `sync.admin` from control."""

    socket_path: Path | None = None
    token: str | None = None


async def list_via_api(url: str, include_replayed: bool, access: ApiAccess) -> list[DeadLetterRow]:
    """`GET /v1/dead-letters` of a running runtime."""
    async with (
        _session(access) as session,
        session.get(f"{url.rstrip('/')}/v1/dead-letters", params={"all": "1" if include_replayed else "0"}) as resp,
    ):
        resp.raise_for_status()
        body = await resp.json()
    return [DeadLetterRow.from_json(item) for item in body["dead_letters"]]


async def replay_via_api(url: str, stream_id: str | None, access: ApiAccess) -> list[DeadLetterRow]:
    """`POST /v1/dead-letters/replay` of a running runtime."""
    payload = {} if stream_id is None else {"stream_id": stream_id}
    async with (
        _session(access) as session,
        session.post(f"{url.rstrip('/')}/v1/dead-letters/replay", json=payload) as resp,
    ):
        resp.raise_for_status()
        body = await resp.json()
    return [DeadLetterRow.from_json(item) for item in body["replayed"]]


def list_in_file(data_dir: Path, include_replayed: bool) -> list[DeadLetterRow]:
    """Dead letters read from the outbox file directly."""
    outbox = Outbox(data_dir / OUTBOX_FILE)
    try:
        return [DeadLetterRow.from_stored(dead) for dead in outbox.dead_letters(include_replayed)]
    finally:
        outbox.close()


def replay_in_file(data_dir: Path, stream_id: str | None) -> list[DeadLetterRow]:
    """Reopen dead-lettered streams in the outbox file directly."""
    outbox = Outbox(data_dir / OUTBOX_FILE)
    try:
        return [DeadLetterRow.from_stored(dead) for dead in outbox.replay(stream_id, now_us())]
    finally:
        outbox.close()
