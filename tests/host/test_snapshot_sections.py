"""A snapshot is mapped, not read: each log partition's buffer is checked against its own checksum before first use.

A start on a large store no longer reads and checksums the whole file (`host/snapshot.py`, format `APSSNAP3`). These
tests hold the promise that came with the whole-file checksum: bytes that fail their checksum are never used or
served, the operation that needs them is refused with the typed `CorruptSnapshotError`, and nothing acknowledged is
lost — the corrupt snapshot is set aside and the next start falls back to the previous one and the log after it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from autopilot_sync.bindings.context import ReducerContext
from autopilot_sync.bindings.module import Module
from autopilot_sync.host.call_outcome import CallStatus
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.host.logtable import LogRows
from autopilot_sync.host.snapshot import MAGIC, read_snapshot
from autopilot_sync.host.snapshot_section import Chunks, CorruptSnapshotError, Section
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime.values import ConnectionId, Identity

module = Module("sections")
module.table(
    "event",
    [("stream_id", at.STRING), ("seq", at.U64), ("key", at.STRING), ("body", at.STRING)],
    unique=[("stream_id", "seq")],
    indexes=[("stream_id", "key"), ("stream_id",)],
)
STREAMS = ("s0", "s1", "s2", "s3")


@module.reducer(("stream_id", at.STRING), ("seq", at.U64), ("body", at.STRING))
def append(ctx: ReducerContext, stream_id: str, seq: int, body: str) -> None:
    key = f"{stream_id}:{seq}"
    if ctx.db.event.filter(("stream_id", "key"), (stream_id, key)):
        return  # a duplicate, as the sync module's idempotency check answers it
    ctx.db.event.insert((stream_id, seq, key, body))


CALLER = Caller(Identity(7), ConnectionId(7))


async def started(path: Path) -> HostEngine:
    engine = HostEngine(module, path, "sections", EngineConfig(snapshot_every=8, snapshots_kept=2))
    await engine.start()
    return engine


async def append_round(engine: HostEngine, seq: int, streams: tuple[str, ...] = STREAMS) -> None:
    for stream in streams:
        outcome = await engine.call_reducer("append", (stream, seq, f"{stream} event {seq} " + "x" * 40), CALLER)
        assert outcome.status is CallStatus.COMMITTED, outcome.message


def seqs_of(engine: HostEngine, stream: str) -> list[int]:
    store = engine.datastore["event"]
    return [store.rows[row_bytes][1] for row_bytes in store.indexes[("stream_id",)].lookup((stream,))]


def snapshots(path: Path) -> list[Path]:
    return sorted((path / "snapshots").glob("*.snap"))


async def test_a_snapshot_maps_its_log_buffers_and_checks_each_at_first_use(tmp_path: Path) -> None:
    engine = await started(tmp_path)
    for seq in range(1, 6):
        await append_round(engine, seq)
    await engine.stop()
    newest = snapshots(tmp_path)[-1]
    assert newest.read_bytes()[:8] == MAGIC
    loaded = read_snapshot(newest)
    buffers = [segment[3] for segment in loaded.logs["event"]]
    assert buffers and all(isinstance(buf, (Section, Chunks)) for buf in buffers), "sections of the mappings"

    reopened = await started(tmp_path)
    rows = reopened.datastore["event"].rows
    assert isinstance(rows, LogRows)
    assert all(seqs_of(reopened, stream) == [1, 2, 3, 4, 5] for stream in STREAMS)
    await append_round(reopened, 6)  # the first write copies a partition out of the mapping
    assert all(type(part.buf) is bytearray and part.pending is None for part in rows.partitions.values())
    await reopened.stop()


async def damaged_history(path: Path, rounds: int) -> tuple[Path, Path]:
    """`rounds` appends to each stream (4 commits a round: snapshots every 8), then the last partition's buffer in
    the newest snapshot damaged; (older snapshot, damaged snapshot)."""
    for seqs in (range(1, 3), range(3, rounds + 1)):  # a stop waits for the snapshot being written: one per run
        engine = await started(path)
        for seq in seqs:
            await append_round(engine, seq)
        await engine.stop()
    older, newest = snapshots(path)
    data = bytearray(newest.read_bytes())
    data[-3] ^= 0xFF  # inside the last partition's buffer (s3's): the head and every array still verify
    newest.write_bytes(bytes(data))
    return older, newest


async def test_a_corrupt_late_section_is_refused_at_first_use_and_a_restart_falls_back_losing_nothing(
    tmp_path: Path,
) -> None:
    older, newest = await damaged_history(tmp_path, 4)  # 16 commits: snapshots at 8 and 16, nothing after

    damaged = await started(tmp_path)  # ready: the damaged buffer has not been needed yet
    assert damaged.recovery.snapshot_offset == int(newest.stem)
    assert seqs_of(damaged, "s0") == [1, 2, 3, 4], "the sections that verify are served"
    with pytest.raises(CorruptSnapshotError):
        seqs_of(damaged, "s3")
    refused = await damaged.call_reducer("append", ("s3", 5, "after the damage"), CALLER)
    assert refused.status is CallStatus.INTERNAL_ERROR and "CorruptSnapshotError" in refused.message
    await append_round(damaged, 5, ("s0", "s1", "s2"))  # other streams go on, durably
    assert not newest.exists() and newest.with_name(newest.name + ".corrupt").exists(), "set aside"
    await damaged.stop()

    again = await started(tmp_path)  # falls back to the previous snapshot and replays the log after it
    assert again.recovery.snapshot_offset == int(older.stem)
    for stream in ("s0", "s1", "s2"):
        assert seqs_of(again, stream) == [1, 2, 3, 4, 5]
    assert seqs_of(again, "s3") == [1, 2, 3, 4]
    await append_round(again, 5, ("s3",))
    await again.stop()


async def test_a_corrupt_section_the_replay_needs_makes_the_start_fall_back_at_once(tmp_path: Path) -> None:
    older, newest = await damaged_history(tmp_path, 5)  # 20 commits: the last 4 append to every stream again

    engine = await started(tmp_path)
    assert engine.recovery.snapshot_offset == int(older.stem), "the damaged snapshot was set aside during start"
    assert newest.with_name(newest.name + ".corrupt").exists()
    assert all(seqs_of(engine, stream) == [1, 2, 3, 4, 5] for stream in STREAMS)
    await engine.stop()


async def test_a_long_range_of_a_corrupt_section_is_refused_not_packed_from_the_mapping(tmp_path: Path) -> None:
    """A resume's range of many rows is packed straight from the partition's buffer (`logtable.RowRun`): that buffer
    is the mapped, unverified section until the partition's first use, so the run must verify it first too."""
    engine = HostEngine(module, tmp_path, "sections", EngineConfig(snapshot_every=300, fsync=False))
    await engine.start()
    for seq in range(1, 301):
        outcome = await engine.call_reducer("append", ("s3", seq, f"event {seq}"), CALLER)
        assert outcome.status is CallStatus.COMMITTED, outcome.message
    await engine.stop()
    (newest,) = snapshots(tmp_path)
    data = bytearray(newest.read_bytes())
    data[-3] ^= 0xFF  # inside s3's buffer, the only partition
    newest.write_bytes(bytes(data))

    damaged = HostEngine(module, tmp_path, "sections", EngineConfig(snapshot_every=1_000, fsync=False))
    await damaged.start()
    index = damaged.datastore["event"].indexes[("stream_id", "seq")]
    with pytest.raises(CorruptSnapshotError):
        list(index.range(("s3",), ("s3", 1_000)))
    await damaged.stop()
