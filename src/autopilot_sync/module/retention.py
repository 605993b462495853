"""Retention the owner sets: per stream, keep at most N events and/or nothing older than an age, applied on a timer.

Why in the module: a host's memory is bounded only if old events go, and which ones may go is a rule of the sync
contract (a client behind the floor must see a stale cursor and rebuild, never a silent gap), so it must hold
wherever the module runs — our host or a real SpacetimeDB running the TypeScript twin. The owner sets the policy
with `set_sync_retention` (two columns of `sync_config`, next to the limits); a scheduled reducer, `apply_retention`,
raises each stream's floor exactly as `trim_stream` does (events below it deleted, `retained_from_seq` and
`floor_chain` moved), so readers behind it take the stale-cursor rebuild they already take after a manual trim.

One run deletes at most `RETENTION_BATCH_EVENTS` events, so a first run on a large store never becomes one huge
transaction; what is left goes at the next tick. Streams are visited in key order, one floor move each per run.
`apply_retention` only ever applies the owner's recorded policy, so anyone able to call it (on SpacetimeDB a
scheduled reducer is callable unless it checks) can at most make it happen sooner.
"""

from __future__ import annotations

from typing import Any

from autopilot_sync.bindings.context import ReducerContext
from autopilot_sync.contract.codes import SyncErrorCode
from autopilot_sync.module.config import CONFIG_ROW, require_owner
from autopilot_sync.module.errors import SyncError
from autopilot_sync.module.floor import raise_floor
from autopilot_sync.module.schema import module
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime.values import SumValue, TimeDuration
from autopilot_sync.sync_bindings import StreamHead, SyncConfig, SyncEvent

#: Most events one `apply_retention` run deletes (over all streams); the rest waits for the next tick.
RETENTION_BATCH_EVENTS = 10_000
#: Shortest interval between retention runs the owner may set (0.1 s).
MIN_RETENTION_EVERY_MICROS = 100_000
#: The `ScheduleAt::Interval` tag.
_INTERVAL = 0

sync_retention_tick = module.table(
    "sync_retention_tick",
    [("scheduled_id", at.U64), ("scheduled_at", at.SCHEDULE_AT)],
    primary_key="scheduled_id",
    auto_inc=["scheduled_id"],
    scheduled_reducer="apply_retention",
    public=False,  # the owner's timer; nobody else needs to see it
)


@module.reducer(("max_events", at.U64), ("max_age_micros", at.U64), ("every_micros", at.U64))
def set_sync_retention(ctx: ReducerContext, max_events: int, max_age_micros: int, every_micros: int) -> None:
    """Set per-stream retention (owner only): keep at most `max_events` events and none older than `max_age_micros`.

    0 turns a bound off; both 0 turns retention off (and its timer). `every_micros` is how often it runs.
    """
    row = require_owner(ctx, "set_sync_retention")
    enabled = max_events > 0 or max_age_micros > 0
    if enabled and every_micros < MIN_RETENTION_EVERY_MICROS:
        raise SyncError(
            SyncErrorCode.INVALID_LIMITS, f"every_micros must be at least {MIN_RETENTION_EVERY_MICROS} (0.1 s)"
        )
    config = SyncConfig.from_values(row)
    ctx.db.sync_config.update(
        config._replace(updated_at=ctx.timestamp, retain_max_events=max_events, retain_max_age_micros=max_age_micros)
    )
    for tick in list(ctx.db.sync_retention_tick):
        ctx.db.sync_retention_tick.delete(tick)
    if enabled:
        ctx.db.sync_retention_tick.insert((0, SumValue(_INTERVAL, TimeDuration(every_micros))))


@module.reducer(("tick", sync_retention_tick.row_type))
def apply_retention(ctx: ReducerContext, tick: Any) -> None:
    """The scheduled run: raise every stream's floor to what the owner's policy keeps, deleting what falls below."""
    row = ctx.db.sync_config.find("id", CONFIG_ROW)
    if row is None:
        return
    config = SyncConfig.from_values(row)
    max_events, max_age_micros = config.retain_max_events, config.retain_max_age_micros
    if max_events == 0 and max_age_micros == 0:
        return
    cutoff = ctx.timestamp.micros - max_age_micros
    budget = RETENTION_BATCH_EVENTS
    for head in [StreamHead.from_values(row) for row in ctx.db.stream_head]:
        if budget == 0:
            return
        floor = head.retained_from_seq
        target = floor
        if max_events > 0:
            target = max(target, head.head_seq - max_events + 1)
        target = min(target, floor + budget)
        if max_age_micros > 0:
            target = _past_old_events(ctx, head, target, min(head.head_seq + 1, floor + budget), cutoff)
        if target > floor:
            raise_floor(ctx, head, target)
            budget -= target - floor


def _past_old_events(ctx: ReducerContext, head: StreamHead, seq: int, limit: int, cutoff: int) -> int:
    """The first seq from `seq` (at most `limit`) whose event was committed at or after `cutoff` (µs)."""
    while seq < limit:
        row = ctx.db.sync_event.find(("stream_id", "seq"), (head.stream_id, seq))
        if row is not None and SyncEvent.from_values(row).committed_at.micros >= cutoff:
            break
        seq += 1
    return seq
