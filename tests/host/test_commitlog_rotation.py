"""The commit log rotates at every snapshot and at a size bound, deletes what snapshots cover, and start-up reads
only the segments after the snapshot it loads: disk and recovery work are bounded by the snapshot interval."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from test_crash_durability import recovered_names, write_load

from autopilot_sync.devtools.processes import free_port, start_host
from autopilot_sync.examples.chat import module
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.commitlog import (
    PREALLOCATE_CHUNK_BYTES,
    PREALLOCATE_LOW_WATER_BYTES,
    list_segments,
    read_records,
    valid_end,
)
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.host.tx_record import record_offset
from autopilot_sync.spacetime.values import ConnectionId, Identity

ALICE = Caller(Identity(0xA11CE), ConnectionId(1), {"sub": "alice"})


async def started(path: Path, **config: int | bool) -> HostEngine:
    engine = HostEngine(module, path, "chat", EngineConfig(**config))  # type: ignore[arg-type]
    await engine.start()
    return engine


async def commit(engine: HostEngine, first: int, count: int) -> None:
    for i in range(first, first + count):
        outcome = await engine.call_reducer("add_person", (f"p{i}", i), ALICE)
        assert outcome.tx is not None


def snapshot_offsets(path: Path) -> list[int]:
    return sorted(int(p.stem) for p in (path / "snapshots").glob("*.snap"))


def logged_offsets(path: Path) -> list[int]:
    """Every offset the log holds, segment by segment, in order."""
    offsets = []
    for _, segment in list_segments(path / "commitlog"):
        for item in read_records(segment):
            assert isinstance(item, tuple), item
            offsets.append(record_offset(item[1]))
    return offsets


async def test_segments_and_disk_stay_bounded_over_many_snapshots(tmp_path: Path) -> None:
    engine = await started(tmp_path, snapshot_every=10, snapshots_kept=3)
    sizes = []
    for round_number in range(6):
        await commit(engine, round_number * 50, 50)
        segments = [p for _, p in list_segments(tmp_path / "commitlog")]
        sizes.append(sum(valid_end(p) for p in segments))
        # Zeros lie ahead only in the segment being written (retired ones are cut), at most a chunk and a half.
        zeros = sum(p.stat().st_size - valid_end(p) for p in segments)
        assert zeros <= PREALLOCATE_CHUNK_BYTES + PREALLOCATE_LOW_WATER_BYTES
    await engine.stop()
    kept = snapshot_offsets(tmp_path)
    assert len(kept) == 3, "exactly the configured number of snapshots is kept"
    # The log holds exactly the records after the oldest kept snapshot: nothing older survives on disk.
    assert logged_offsets(tmp_path) == list(range(kept[0] + 1, engine.offset + 1))
    # A segment starts right after every kept snapshot (the record after it opens that segment): none spans one.
    firsts = [first for first, _ in list_segments(tmp_path / "commitlog")]
    assert [s + 1 for s in kept if s < engine.offset] == [f for f in firsts if f - 1 in kept]
    assert len(firsts) <= len(kept)
    # Disk use after any round stays near what the kept snapshots need (about 30 commits), not the history (300).
    record_bytes = sizes[-1] / len(logged_offsets(tmp_path))
    assert max(sizes) < record_bytes * 60, f"log size grows with history: {sizes}"


async def test_a_host_with_few_large_commits_snapshots_by_bytes_written(tmp_path: Path) -> None:
    # Commits are counted in the millions before a snapshot, so only the bytes rule can take one.
    engine = await started(tmp_path, snapshot_every=1_000_000, snapshot_every_bytes=4096)
    names = [f"p{i}-{'x' * 100}" for i in range(40)]
    for name in names:
        outcome = await engine.call_reducer("add_person", (name, 1), ALICE)
        assert outcome.tx is not None
    await engine.stop()
    assert snapshot_offsets(tmp_path), "no snapshot although far more than 4096 bytes of log were written"
    newest = snapshot_offsets(tmp_path)[-1]
    reopened = await started(tmp_path, snapshot_every=1_000_000, snapshot_every_bytes=4096)
    assert reopened.recovery.snapshot_offset == newest
    assert reopened.recovery.replayed == reopened.offset - newest < 40
    assert sorted(row[1] for row in reopened.datastore["person"].rows.values()) == sorted(names)
    await reopened.stop()


async def test_bytes_replayed_at_start_count_toward_the_next_snapshot(tmp_path: Path) -> None:
    engine = await started(tmp_path, snapshot_every=1_000_000, snapshot_every_bytes=1_000_000)
    await commit(engine, 0, 20)
    await engine.stop()
    assert snapshot_offsets(tmp_path) == []
    reopened = await started(tmp_path, snapshot_every=1_000_000, snapshot_every_bytes=1_000_000)
    assert reopened.recovery.replayed == 20 and reopened.recovery.replayed_bytes > 0
    await reopened.stop()
    # the same history read with a bound below what was replayed: the first commit after start snapshots
    again = await started(tmp_path, snapshot_every=1_000_000, snapshot_every_bytes=reopened.recovery.replayed_bytes)
    await commit(again, 100, 1)
    await again.stop()
    assert snapshot_offsets(tmp_path) == [21]


async def test_start_reads_only_the_segments_after_the_newest_snapshot(tmp_path: Path) -> None:
    engine = await started(tmp_path, snapshot_every=25)
    await commit(engine, 0, 110)
    await engine.stop()
    newest = snapshot_offsets(tmp_path)[-1]
    reopened = await started(tmp_path, snapshot_every=25)
    report = reopened.recovery
    assert report.snapshot_offset == newest
    assert report.records_read == report.replayed == reopened.offset - newest
    assert report.segments_read == 1
    assert len(reopened.datastore["person"]) == 110
    await reopened.stop()


async def test_segments_rotate_at_the_size_bound_and_recover_whole(tmp_path: Path) -> None:
    engine = await started(tmp_path, segment_max_bytes=1000, snapshot_every=1_000_000)
    await commit(engine, 0, 60)
    await engine.stop()
    segments = list_segments(tmp_path / "commitlog")
    assert len(segments) > 5
    assert all(path.stat().st_size <= 1000 for _, path in segments)
    assert logged_offsets(tmp_path) == list(range(1, engine.offset + 1))
    reopened = await started(tmp_path)
    assert reopened.recovery.tail is None and reopened.recovery.replayed == engine.offset
    assert len(reopened.datastore["person"]) == 60
    await reopened.stop()


async def test_restarts_start_a_new_segment_and_snapshots_still_delete_old_ones(tmp_path: Path) -> None:
    for restart in range(4):
        engine = await started(tmp_path, snapshot_every=15)
        await commit(engine, restart * 20, 20)
        await engine.stop()
    kept = snapshot_offsets(tmp_path)
    assert len(kept) == 2
    assert logged_offsets(tmp_path) == list(range(kept[0] + 1, engine.offset + 1))
    reopened = await started(tmp_path)
    assert len(reopened.datastore["person"]) == 80
    await reopened.stop()


async def test_acknowledged_commits_survive_sigkill_while_the_log_rotates_and_deletes(tmp_path: Path) -> None:
    port = free_port()
    env = {"AUTOPILOT_SYNC_HOST_SNAPSHOT_EVERY_COMMITS": "20", "AUTOPILOT_SYNC_HOST_SEGMENT_MAX_BYTES": "4096"}
    acked: list[list[str]] = []
    attempted: list[list[str]] = []
    for cycle in range(3):
        host = start_host(tmp_path, module="autopilot_sync.examples.chat", database="chat", port=port, env=env)
        workers = [asyncio.create_task(write_load(host.url, cycle * 10 + w, acked, attempted)) for w in range(4)]
        await asyncio.sleep(0.8 + random.random() * 0.4)
        host.kill()
        await asyncio.gather(*workers)
    assert len(acked) > 20, "the load never got going"
    # Snapshots were taken and pruned under the load (a kill between writing one and pruning leaves one extra).
    assert 1 <= len(snapshot_offsets(tmp_path)) <= 3
    stored = await recovered_names(tmp_path)
    missing = [name for batch in acked for name in batch if name not in stored]
    assert not missing, f"{len(missing)} acknowledged names lost, e.g. {missing[:3]}"
