"""A snapshot holds the tables as they were at the offset it names, however much changes before it is written.

The rows are captured at a commit on the event loop and written later in a thread (`host/snapshot_scheduler.py`);
the capture of a log table reuses the mapping of the previous one once nothing reads it (`host/capture_arena.py`).
Here every write is held until more commits have appended to the captured partitions, opened new ones, trimmed
and compacted them and updated the generic table's rows: each snapshot file, read back with its chain, must still
equal the tables at its own offset, row for row. A capture that shared a live buffer, skipped a changed table, or
wrote into a mapping a pending snapshot still reads would show up here as a row of a later offset.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from autopilot_sync.bindings.context import ReducerContext
from autopilot_sync.bindings.module import Module
from autopilot_sync.host import snapshot_scheduler
from autopilot_sync.host.call_outcome import CallStatus
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.capture_arena import KEEP_MAX, REUSABLE, CaptureArena
from autopilot_sync.host.datastore import TableStore
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.host.logtable import COMPACT_AFTER, LogRows
from autopilot_sync.host.snapshot import read_header, read_snapshot
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime.values import ConnectionId, Identity

CALLER = Caller(Identity(7), ConnectionId(7))


def capture_module() -> Module:
    """A log table (the sync module's `sync_event` shape) and a generic table each append updates."""
    module = Module("capture")
    module.table(
        "event",
        [("stream_id", at.STRING), ("seq", at.U64), ("key", at.STRING), ("body", at.STRING)],
        unique=[("stream_id", "seq")],
        indexes=[("stream_id", "key"), ("stream_id",)],
    )
    module.table("tally", [("stream_id", at.STRING), ("appended", at.U64)], primary_key="stream_id")

    @module.reducer(("stream_id", at.STRING), ("first", at.U64), ("count", at.U64))
    def append(ctx: ReducerContext, stream_id: str, first: int, count: int) -> None:
        for seq in range(first, first + count):
            ctx.db.event.insert((stream_id, seq, f"{stream_id}:{seq}", f"body {seq}"))
        ctx.db.tally.delete_by("stream_id", stream_id)
        ctx.db.tally.insert((stream_id, first + count - 1))

    @module.reducer(("stream_id", at.STRING), ("below", at.U64))
    def trim(ctx: ReducerContext, stream_id: str, below: int) -> None:
        for row in ctx.db.event.filter("stream_id", stream_id):
            if row[1] < below:
                ctx.db.event.delete(row)

    return module


class HeldWrites:
    """Holds every snapshot write in its thread until the test opens the gate: the capture is made at the commit,
    the commits after it run while the write waits."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.gate = threading.Event()
        self.entered = 0
        for name in ("write_snapshot", "write_consolidated"):
            real = getattr(snapshot_scheduler, name)
            monkeypatch.setattr(snapshot_scheduler, name, self._held(real))

    def _held(self, real: Any) -> Any:
        def held(directory: Path, snapshot: Any) -> Path:
            self.entered += 1
            assert self.gate.wait(timeout=60), "the test never opened the gate"
            return real(directory, snapshot)

        return held


def state(engine: HostEngine) -> tuple[list[bytes], list[bytes]]:
    """Both tables' rows (as stored bytes) at the engine's current offset."""
    return sorted(engine.datastore["event"].rows), sorted(engine.datastore["tally"].rows)


def snapshot_state(engine: HostEngine, path: Path) -> tuple[list[bytes], list[bytes]]:
    """Both tables' rows as the snapshot file `path` (and its chain) holds them."""
    snapshot = read_snapshot(path)
    events = TableStore(engine.datastore["event"].table)
    assert isinstance(events.rows, LogRows)
    events.rows.load_segments(snapshot.logs["event"])
    return sorted(events.rows), sorted(snapshot.tables["tally"])


async def test_each_snapshot_holds_the_tables_at_its_offset_while_commits_run_before_its_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = HeldWrites(monkeypatch)
    config = EngineConfig(
        fsync=False, snapshot_every=3, snapshot_delta_every_bytes=1 << 30, snapshot_deltas_max=3, snapshots_kept=100
    )
    engine = HostEngine(capture_module(), tmp_path / "data", "capture", config)
    await engine.start()
    at_offset: dict[int, tuple[list[bytes], list[bytes]]] = {}
    next_seq: dict[str, int] = {}
    trimmed: dict[str, int] = {}

    async def call(reducer: str, *args: object) -> None:
        outcome = await engine.call_reducer(reducer, args, CALLER)
        assert outcome.status is CallStatus.COMMITTED, outcome.message
        at_offset[engine.offset] = state(engine)

    async def append(stream: str, count: int) -> None:
        first = next_seq.get(stream, 1)
        await call("append", stream, first, count)
        next_seq[stream] = first + count

    for i in range(40):
        await append(f"s{i % 5}", 1 + i % 4)  # the captured partitions grow
        if i % 6 == 5:
            await append(f"new{i}", 2)  # a partition the capture does not have
        if i % 7 == 3:
            stream = f"s{i % 5}"
            trimmed[stream] = trimmed.get(stream, 1) + 2
            await call("trim", stream, trimmed[stream])  # its head moves
        if i == 20:
            await append("big", COMPACT_AFTER + 100)
        if i == 22:
            await call("trim", "big", COMPACT_AFTER + 50)  # compacted: its arrays and buffer rewritten
        if i % 3 == 2:
            held.gate.set()  # every capture so far was followed by commits before its write
            await engine.snapshot_written()
            held.gate.clear()
    held.gate.set()
    await engine.stop()

    files = sorted((tmp_path / "data" / "snapshots").glob("*.snap"))
    assert held.entered == len(files) >= 8, "every snapshot written, while commits kept coming"
    assert any(read_header(path).base for path in files), "incremental ones among them"
    for path in files:
        assert snapshot_state(engine, path) == at_offset[int(path.stem)], f"snapshot {path.name} is not its offset"


def test_a_capture_arena_is_written_over_only_once_no_view_of_it_is_alive() -> None:
    arena = CaptureArena()
    first = arena.take(100, keep=True)
    view = memoryview(first)[:10]
    second = arena.take(100, keep=True)
    assert second is not first, "a view of the first capture is alive: a fresh mapping"
    view.release()
    third = arena.take(200, keep=True)
    assert (third is second) is REUSABLE, "nothing reads the previous capture: its mapping again (on Linux)"
    assert third.tell() == 0
    large = arena.take(KEEP_MAX + 1, keep=True)
    assert len(large) == KEEP_MAX + 1 and large is not third, "a capture larger than KEEP_MAX: its own mapping"
    assert (arena.take(100, keep=True) is third) is REUSABLE, "and it is not kept: the kept one serves again"
