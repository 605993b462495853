"""Raising a stream's retained floor: the one way events leave a stream short of a reset.

`trim_stream` (an admin's explicit floor) and `apply_retention` (the owner's policy, module/retention.py) both move
the floor through here, so both leave the same trace a client recognises as a stale cursor: `retained_from_seq`
raised and `floor_chain` set to the chain value just below it (docs/protocol.md "Stream hash chain").
"""

from __future__ import annotations

from autopilot_sync.bindings.context import ReducerContext
from autopilot_sync.sync_bindings import StreamHead, SyncEvent


def raise_floor(ctx: ReducerContext, head: StreamHead, retain_from_seq: int) -> None:
    """Delete the stream's events below `retain_from_seq` and move its floor there (the caller checked the bounds)."""
    floor_chain = head.floor_chain
    low, high = (head.stream_id, head.retained_from_seq), (head.stream_id, retain_from_seq - 1)
    for row in ctx.db.sync_event.range(("stream_id", "seq"), low, high):
        ctx.db.sync_event.delete(row)
        floor_chain = SyncEvent.from_values(row).chain  # ascending: ends as the chain value just below the new floor
    ctx.db.stream_head.update(
        head._replace(retained_from_seq=retain_from_seq, updated_at=ctx.timestamp, floor_chain=floor_chain)
    )
