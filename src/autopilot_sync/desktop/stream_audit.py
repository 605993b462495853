"""Audit one stream on a running host, over the protocol, from its retained floor (the desktop's verify command and
`autopilot-sync verify-stream`).

Here, in the desktop, because the desktop runs it too and the desktop stands below `verification/`, which only adds
the command line.

Why: the stream hash chain (docs/protocol.md "Stream hash chain") lets anyone check that a host's stream is one
unbroken history: every retained event present, its payload hashing to its `payload_hash`, its chain value linking
to the one before it from `floor_chain`, and the last one equal to `head_chain`. Desktops check this as they apply;
this is the same check over the whole retained stream, for operators after a restore, a migration or an incident.

`audit` is pure (rows in, verdict out); `fetch_stream` subscribes the head and the events in one query set, so both
come from one consistent state of the host (a one-off query per table could straddle a commit).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from autopilot_sync.client.connection import connect
from autopilot_sync.client.errors import ClientError
from autopilot_sync.contract import stream_chain
from autopilot_sync.sync_bindings import ROW_TYPES, StreamHead, SyncEvent


@dataclass(frozen=True, slots=True)
class AuditResult:
    """What an audit found: OK, or the first bad seq and why."""

    stream_id: str
    events: int
    first_seq: int
    head_seq: int
    epoch: int
    bad_seq: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        """True when the whole retained stream verifies."""
        return self.bad_seq is None

    def render(self) -> str:
        """One line for the terminal."""
        if self.ok:
            return (
                f"OK {self.stream_id}: seq {self.first_seq}..{self.head_seq} ({self.events} events) "
                f"epoch {self.epoch}: chain verified from the retained floor to the head"
            )
        return f"BROKEN {self.stream_id} at seq {self.bad_seq}: {self.reason}"


class StreamAuditError(RuntimeError):
    """The audit could not run (no such stream, refused query, unreachable host); not a verdict on the stream."""


def _payload_hash(payload: str) -> str:
    return "sha256:" + hashlib.sha256(payload.encode("utf-8")).hexdigest()


def audit(head: StreamHead, events: Sequence[SyncEvent]) -> AuditResult:
    """Check `events` (the stream's `sync_event` rows, any order) against its `stream_head` row."""
    stream_id = head.stream_id
    floor, head_seq, epoch = head.retained_from_seq, head.head_seq, head.epoch
    ordered = sorted(events, key=lambda row: row.seq)
    result = AuditResult(stream_id, len(ordered), floor, head_seq, epoch)

    def broken(seq: int, reason: str) -> AuditResult:
        return AuditResult(stream_id, len(ordered), floor, head_seq, epoch, seq, reason)

    if not head.floor_chain or not head.head_chain:
        return broken(floor, "the host serves no chain values (a host from before stream chains)")
    for row in ordered:
        if _payload_hash(row.payload) != row.payload_hash:
            return broken(row.seq, f"payload does not hash to its payload_hash {row.payload_hash}")
        if row.epoch > epoch:
            return broken(row.seq, f"epoch {row.epoch} is after the stream's epoch {epoch}")
    found = stream_chain.first_break(floor - 1, head.floor_chain, ordered)
    if found is not None:
        return broken(found.seq, found.reason)
    last_seq = ordered[-1].seq if ordered else floor - 1
    if last_seq != head_seq:
        return broken(last_seq + 1, f"the head is seq {head_seq} but the retained events end at {last_seq}")
    last_chain = ordered[-1].chain if ordered else head.floor_chain
    if last_chain != head.head_chain:
        return broken(head_seq, f"head_chain {head.head_chain} is not the last event's chain value {last_chain}")
    return result


def _quote(stream_id: str) -> str:
    return stream_id.replace("'", "''")


async def fetch_stream(
    base_url: str, database: str, stream_id: str, token: str | None
) -> tuple[StreamHead, list[SyncEvent]]:
    """The stream's head row and every retained event, from one subscription (one consistent state).

    Bound it with `asyncio.timeout`: a host that never answers is waited for.
    """
    where = f"WHERE stream_id = '{_quote(stream_id)}'"
    try:
        connection = await connect(base_url, database, token=token, row_types=ROW_TYPES)
        async with connection:
            query_set = await connection.subscribe(
                [f"SELECT * FROM stream_head {where}", f"SELECT * FROM sync_event {where}"]
            )
            await query_set.applied()
            heads: list[StreamHead] = [r for r in connection.cache.rows("stream_head") if r.stream_id == stream_id]
            events: list[SyncEvent] = [r for r in connection.cache.rows("sync_event") if r.stream_id == stream_id]
    except (ClientError, aiohttp.ClientError, OSError) as exc:  # refused token, subscription error, lost connection
        raise StreamAuditError(f"{type(exc).__name__}: {exc}") from None
    if not heads:
        raise StreamAuditError(f"stream {stream_id!r} has no stream_head row on {base_url} ({database})")
    return heads[0], events
