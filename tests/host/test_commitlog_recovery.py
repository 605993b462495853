"""Damage in the commit log: what a snapshot covers costs nothing, a damaged live tail is set aside from there on.

Includes the upgrade path: a data directory written before the log rotated holds one segment with the whole history,
so the damaged record and the acknowledged commits after the newest snapshot share a file.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import aiohttp
import pytest

from autopilot_sync.devtools.processes import start_host
from autopilot_sync.examples.chat import module
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.commitlog import CommitLog, list_segments, valid_end
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.host.hosted_module import hosted
from autopilot_sync.host.recovery import check_meta
from autopilot_sync.spacetime.values import ConnectionId, Identity

ALICE = Caller(Identity(0xA11CE), ConnectionId(1), {"sub": "alice"})
HEADER_BYTES = 8


async def started(path: Path, **config: int | bool) -> HostEngine:
    engine = HostEngine(module, path, "chat", EngineConfig(**config))  # type: ignore[arg-type]
    await engine.start()
    return engine


def names(engine: HostEngine) -> set[str]:
    return {row[1] for row in engine.datastore["person"].rows.values()}


async def write_history(path: Path, commits: int, snapshot_every: int) -> tuple[dict[int, str], int]:
    """Commit `commits` people with snapshots every `snapshot_every` commits; name by offset, newest snapshot."""
    engine = await started(path, snapshot_every=snapshot_every)
    written: dict[int, str] = {}
    for i in range(commits):
        outcome = await engine.call_reducer("add_person", (f"p{i}", i), ALICE)
        assert outcome.tx is not None
        written[outcome.tx.offset] = f"p{i}"
    await engine.stop()
    snapshots = sorted(int(p.stem) for p in (path / "snapshots").glob("*.snap"))
    assert snapshots, "the history should include a snapshot"
    return written, snapshots[-1]


def up_to(written: dict[int, str], offset: int) -> set[str]:
    """The names committed at or before `offset`."""
    return {name for at, name in written.items() if at <= offset}


async def pre_rotation_history(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[int, str], int]:
    """A data directory as the host left it before the log rotated: snapshots, and one segment from offset 1 on.

    Written by today's engine with segment deletion switched off (the pre-rotation host never deleted one), then
    joined: that host appended every record to the segment it created first, `00000000000000000001.log`.
    """
    with monkeypatch.context() as patch:
        patch.setattr(CommitLog, "drop_segments_before", lambda self, first_offset: 0)
        written, snapshot_offset = await write_history(path, 40, snapshot_every=15)
    segments = list_segments(path / "commitlog")
    assert segments[0][0] == 1
    data = b"".join(p.read_bytes()[: valid_end(p)] for _, p in segments)  # without the zeros written ahead
    for _, p in segments:
        p.unlink()
    (path / "commitlog" / "00000000000000000001.log").write_bytes(data)
    return written, snapshot_offset


def single_segment(path: Path) -> Path:
    (segment,) = (path / "commitlog").glob("*.log")
    return segment


def record_positions(segment: Path) -> dict[int, int]:
    """Byte position of every record in a segment, by the transaction offset it holds."""
    data = segment.read_bytes()
    positions, position, end = {}, 0, valid_end(segment)
    while position < end:
        offset = int.from_bytes(data[position + HEADER_BYTES : position + HEADER_BYTES + 8], "little")
        positions[offset] = position
        position += HEADER_BYTES + int.from_bytes(data[position : position + 4], "little")
    return positions


def flip_payload_byte(segment: Path, record_position: int) -> None:
    """Damage one payload byte of the record at `record_position`, leaving its length prefix intact."""
    data = bytearray(segment.read_bytes())
    data[record_position + HEADER_BYTES + 20] ^= 0xFF
    segment.write_bytes(bytes(data))


async def test_flipped_byte_in_a_covered_first_record_of_a_single_segment_log_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written, snapshot_offset = await pre_rotation_history(tmp_path, monkeypatch)
    segment = single_segment(tmp_path)
    flip_payload_byte(segment, record_positions(segment)[1])  # the first record of the log
    reopened = await started(tmp_path)
    assert reopened.recovery.snapshot_offset == snapshot_offset
    assert reopened.recovery.tail is None, "damage a snapshot covers must not set anything aside"
    assert reopened.recovery.covered_damage == 1
    assert names(reopened) == set(written.values())
    await reopened.stop()


async def test_damaged_live_record_in_a_single_segment_log_sets_aside_only_from_that_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written, snapshot_offset = await pre_rotation_history(tmp_path, monkeypatch)
    segment = single_segment(tmp_path)
    positions = record_positions(segment)
    damaged_offset = snapshot_offset + 3
    flip_payload_byte(segment, positions[damaged_offset])
    reopened = await started(tmp_path)
    tail = reopened.recovery.tail
    assert tail is not None and "checksum" in tail.reason
    assert reopened.recovery.offset == damaged_offset - 1
    assert names(reopened) == up_to(written, damaged_offset - 1)
    assert segment.stat().st_size == positions[damaged_offset], "the segment is cut at the damaged record"
    await reopened.stop()


async def test_damaged_record_right_after_the_snapshot_is_not_mistaken_for_covered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, snapshot_offset = await pre_rotation_history(tmp_path, monkeypatch)
    segment = single_segment(tmp_path)
    flip_payload_byte(segment, record_positions(segment)[snapshot_offset + 1])
    reopened = await started(tmp_path)
    assert reopened.recovery.tail is not None and reopened.recovery.covered_damage == 0
    assert reopened.recovery.offset == snapshot_offset
    await reopened.stop()


async def test_damage_in_a_segment_older_than_the_newest_snapshot_costs_nothing(tmp_path: Path) -> None:
    written, snapshot_offset = await write_history(tmp_path, 40, snapshot_every=15)
    segments = list_segments(tmp_path / "commitlog")
    covered = [path for (_, path), (following, _) in itertools.pairwise(segments) if following <= snapshot_offset + 1]
    assert covered, "the older snapshot's segments are kept"
    for path in covered:
        path.write_bytes(b"\xff" * 3 + path.read_bytes()[3:])  # a garbage length prefix: unreadable from byte 0
    reopened = await started(tmp_path)
    assert reopened.recovery.tail is None
    assert reopened.recovery.segments_read == 1
    assert names(reopened) == set(written.values())
    await reopened.stop()


async def test_damage_in_the_live_segment_sets_aside_only_from_the_damaged_record(tmp_path: Path) -> None:
    written, snapshot_offset = await write_history(tmp_path, 40, snapshot_every=15)
    first, segment = list_segments(tmp_path / "commitlog")[-1]
    assert first == snapshot_offset + 1, "the segment after a snapshot starts right after it"
    flip_payload_byte(segment, record_positions(segment)[snapshot_offset + 5])
    reopened = await started(tmp_path)
    assert reopened.recovery.tail is not None and "checksum" in reopened.recovery.tail.reason
    assert reopened.recovery.offset == snapshot_offset + 4
    assert names(reopened) == up_to(written, snapshot_offset + 4)
    await reopened.stop()


async def test_a_host_process_that_sets_a_tail_aside_says_so_in_its_output_and_metrics(tmp_path: Path) -> None:
    _, snapshot_offset = await write_history(tmp_path, 40, snapshot_every=15)
    _, segment = list_segments(tmp_path / "commitlog")[-1]
    flip_payload_byte(segment, record_positions(segment)[snapshot_offset + 2])
    host = start_host(tmp_path, module="autopilot_sync.examples.chat", database="chat")
    try:
        async with aiohttp.ClientSession() as session, session.get(f"{host.url}/metrics") as response:
            scrape = await response.text()
    finally:
        host.stop()
    warning = next(line for line in host.output if line.startswith("WARNING commit log tail set aside"))
    assert "checksum mismatch" in warning
    set_aside = int(warning.rsplit("(", 1)[1].split()[0])
    assert f"autopilot_sync_host_commitlog_quarantined_bytes_total {float(set_aside)}" in scrape
    assert "autopilot_sync_host_commitlog_quarantine_folders 1.0" in scrape
    assert any("SET ASIDE" in line for line in host.output), "the log line says it loudly"


async def test_a_single_segment_log_upgrades_in_place_and_is_deleted_once_snapshots_cover_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written, snapshot_offset = await pre_rotation_history(tmp_path, monkeypatch)
    upgraded = await started(tmp_path, snapshot_every=15)
    # The whole old segment is read once, but only the records after the snapshot are decoded and applied.
    assert upgraded.recovery.records_read == max(written)
    assert upgraded.recovery.replayed == max(written) - snapshot_offset
    for i in range(40, 80):
        await upgraded.call_reducer("add_person", (f"p{i}", i), ALICE)
    await upgraded.stop()
    assert not (tmp_path / "commitlog" / "00000000000000000001.log").exists()
    reopened = await started(tmp_path)
    assert len(names(reopened)) == 80
    assert reopened.recovery.records_read == reopened.offset - reopened.recovery.snapshot_offset
    await reopened.stop()


def test_a_restart_of_an_unchanged_module_does_not_rewrite_meta_json(tmp_path: Path) -> None:
    first = check_meta(tmp_path, hosted(module), "chat")
    before = (tmp_path / "meta.json").stat()
    assert check_meta(tmp_path, hosted(module), "chat") == first
    after = (tmp_path / "meta.json").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # no new file renamed over it
