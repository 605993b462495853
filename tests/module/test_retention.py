"""Retention the owner sets (issue 21): the scheduled reducer keeps each stream within its bounds, raising the floor.

The real engine runs the real module with its real timer; the owner is the engine's configured owner (Identity 0).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sync_module_helpers import ADMIN, PUBLISHER, caller, event

from autopilot_sync.contract.codes import SyncErrorCode, parse_error_code
from autopilot_sync.host.call_outcome import CallStatus
from autopilot_sync.host.engine import HostEngine
from autopilot_sync.spacetime.values import SumValue, TimeDuration
from autopilot_sync.sync_bindings import StreamHead, SyncConfig, SyncEvent, SyncRetentionTick

OWNER = caller([], ident=0, conn=50)
EVERY = 100_000  # µs: the shortest interval allowed


def head_of(engine: HostEngine, stream: str) -> StreamHead:
    rows = [StreamHead.from_values(row) for row in engine.datastore["stream_head"].rows.values()]
    return next(row for row in rows if row.stream_id == stream)


def events_of(engine: HostEngine, stream: str) -> dict[int, SyncEvent]:
    rows = [SyncEvent.from_values(row) for row in engine.datastore["sync_event"].rows.values()]
    return {row.seq: row for row in rows if row.stream_id == stream}


async def code_of(engine: HostEngine, reducer: str, *args: object, who: object = OWNER) -> SyncErrorCode | None:
    outcome = await engine.call_reducer(reducer, args, who)  # type: ignore[arg-type]
    if outcome.status is CallStatus.COMMITTED:
        return None
    assert outcome.status is CallStatus.USER_ERROR, outcome.message
    return parse_error_code(outcome.message)


async def until(what: str, check: Callable[[], bool], within: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def append(engine: HostEngine, stream: str, first: int, count: int) -> None:
    batch = [event(stream, seq, {"n": seq}) for seq in range(first, first + count)]
    outcome = await engine.call_reducer("append_sync_events", (batch,), PUBLISHER)
    assert outcome.status is CallStatus.COMMITTED, outcome.message


async def test_retention_keeps_at_most_max_events_per_stream_and_raises_the_floor_like_a_trim(
    engine: HostEngine,
) -> None:
    await append(engine, "long", 1, 10)
    await append(engine, "short", 1, 2)
    chain_below_floor = events_of(engine, "long")[7].chain
    assert await code_of(engine, "set_sync_retention", 3, 0, EVERY) is None
    await until("the floor of the long stream at 8", lambda: head_of(engine, "long").retained_from_seq == 8)
    assert sorted(events_of(engine, "long")) == [8, 9, 10]
    assert head_of(engine, "long").floor_chain == chain_below_floor  # what a client checks its prefix against
    assert head_of(engine, "long").head_seq == 10
    assert sorted(events_of(engine, "short")) == [1, 2] and head_of(engine, "short").retained_from_seq == 1
    await append(engine, "long", 11, 2)  # the stream goes on; the floor follows it
    await until("the floor at 10", lambda: head_of(engine, "long").retained_from_seq == 10)
    assert sorted(events_of(engine, "long")) == [10, 11, 12]


async def test_retention_drops_events_older_than_max_age_and_may_empty_a_stream(engine: HostEngine) -> None:
    await append(engine, "s", 1, 3)
    await asyncio.sleep(1.5)
    await append(engine, "s", 4, 2)
    assert await code_of(engine, "set_sync_retention", 0, 1_000_000, EVERY) is None
    await until("the three old events gone", lambda: head_of(engine, "s").retained_from_seq >= 4)
    assert set(events_of(engine, "s")) <= {4, 5}
    await until("every event aged out", lambda: head_of(engine, "s").retained_from_seq == 6)
    assert events_of(engine, "s") == {} and head_of(engine, "s").head_seq == 5
    await append(engine, "s", 6, 1)  # an emptied stream keeps its seqs: the next event is 6


async def test_only_the_owner_sets_retention_and_a_too_short_interval_is_refused(engine: HostEngine) -> None:
    assert await code_of(engine, "set_sync_retention", 3, 0, EVERY, who=ADMIN) is SyncErrorCode.UNAUTHORIZED
    assert await code_of(engine, "set_sync_retention", 3, 0, EVERY - 1) is SyncErrorCode.INVALID_LIMITS
    (row,) = engine.datastore["sync_config"].rows.values()
    assert (SyncConfig.from_values(row).retain_max_events, SyncConfig.from_values(row).retain_max_age_micros) == (0, 0)
    assert len(engine.datastore["sync_retention_tick"].rows) == 0


async def test_retention_turned_off_stops_its_timer_and_keeps_everything(engine: HostEngine) -> None:
    assert await code_of(engine, "set_sync_retention", 5, 0, EVERY) is None
    assert len(engine.datastore["sync_retention_tick"].rows) == 1
    assert await code_of(engine, "set_sync_retention", 7, 60_000_000, 2 * EVERY) is None
    assert len(engine.datastore["sync_retention_tick"].rows) == 1  # replaced, not added
    assert await code_of(engine, "set_sync_retention", 0, 0, 0) is None
    assert len(engine.datastore["sync_retention_tick"].rows) == 0
    await append(engine, "s", 1, 8)
    tick = SyncRetentionTick(scheduled_id=1, scheduled_at=SumValue(0, TimeDuration(EVERY)))
    # anyone may run it (a scheduled reducer is callable on SpacetimeDB too): it only applies the owner's policy
    assert await code_of(engine, "apply_retention", tick, who=PUBLISHER) is None
    assert sorted(events_of(engine, "s")) == list(range(1, 9))


async def test_limits_set_after_retention_keep_the_retention(engine: HostEngine) -> None:
    assert await code_of(engine, "set_sync_retention", 5, 0, EVERY) is None
    assert await code_of(engine, "set_sync_limits", 1000, 10, 256, 512, 128, 64) is None
    (row,) = engine.datastore["sync_config"].rows.values()
    config = SyncConfig.from_values(row)
    assert (config.max_batch_events, config.retain_max_events) == (10, 5)
