"""Zeros written ahead of the commit log's write position: the zero tail is the clean end of a segment, a record that
was never acknowledged cannot come back after a restart, extensions follow rotations, and a full disk fails the log
without losing what was acknowledged."""

from __future__ import annotations

import errno
import struct
import zlib
from pathlib import Path

import pytest

from autopilot_sync.host import commitlog
from autopilot_sync.host.commitlog import (
    PREALLOCATE_CHUNK_BYTES,
    CommitLog,
    list_segments,
    read_records,
    valid_end,
)


def record_bytes(payload: bytes) -> bytes:
    """A record as the format defines it (length, CRC-32, payload), built here independently of the writer."""
    return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


def opened(directory: Path, **options: int) -> CommitLog:
    """A log recovered and open for writing, once its first zeros ahead are written (as a host's first call after
    start finds them)."""
    log = CommitLog(directory, **options)  # type: ignore[arg-type]
    scan = log.recover(0)
    log.open_segment(1 + len(scan.payloads))
    assert log._extension is not None and log._extension.done.wait(10)
    return log


async def write(log: CommitLog, *payloads: bytes) -> None:
    """Append and wait until durable (acknowledged)."""
    last = 0
    for payload in payloads:
        last = log.append(payload)
    await log.wait_durable(last)


def payloads_of(path: Path) -> list[bytes]:
    out = []
    for item in read_records(path):
        assert isinstance(item, tuple), item
        out.append(item[1])
    return out


def crash(log: CommitLog) -> None:
    """Drop a log as a killed process would: no trimming, no final fsync (written bytes stay in the page cache)."""
    for thread in (log._flusher, log._zeroer):
        if thread is not None:
            thread.shutdown(wait=True)
    for fd in [*log._retired_fds, *([log._fd] if log._fd is not None else [])]:
        commitlog.os.close(fd)
    log._fd = None
    log._retired_fds = []


async def test_records_overwrite_zeros_written_ahead_and_the_zero_tail_reads_as_a_clean_end(tmp_path: Path) -> None:
    log = opened(tmp_path)
    await write(log, b"one", b"two", b"three")
    (_, segment), *_ = list_segments(tmp_path)
    crash(log)
    size = segment.stat().st_size
    end = valid_end(segment)
    assert end == sum(len(record_bytes(p)) for p in (b"one", b"two", b"three"))
    assert size == PREALLOCATE_CHUNK_BYTES, "a chunk of zeros lies ahead of the records"
    assert segment.read_bytes()[end:] == bytes(size - end)
    again = CommitLog(tmp_path)
    scan = again.recover(0)
    assert scan.payloads == [b"one", b"two", b"three"]
    assert scan.tail is None, "zeros after the last record are not damage"
    assert again.quarantine_folders() == []


async def test_a_clean_close_cuts_the_zero_tail(tmp_path: Path) -> None:
    log = opened(tmp_path)
    await write(log, b"one")
    log.close()
    (_, segment), *_ = list_segments(tmp_path)
    assert segment.read_bytes() == record_bytes(b"one")


def test_a_log_appended_without_zeros_ahead_still_reads(tmp_path: Path) -> None:
    (tmp_path / "00000000000000000001.log").write_bytes(record_bytes(b"old-1") + record_bytes(b"old-2"))
    log = CommitLog(tmp_path)
    scan = log.recover(0)
    assert scan.payloads == [b"old-1", b"old-2"] and scan.tail is None


def test_an_empty_record_is_refused(tmp_path: Path) -> None:
    log = opened(tmp_path)
    with pytest.raises(ValueError, match="never empty"):
        log.append(b"")
    log.close()


def test_bytes_after_a_zero_header_are_damage_set_aside(tmp_path: Path) -> None:
    """A record that reached the disk after one that never did: not served, but moved aside and reported."""
    good, lost, later = record_bytes(b"good"), record_bytes(b"lost"), record_bytes(b"later")
    segment = tmp_path / "00000000000000000001.log"
    segment.write_bytes(good + bytes(len(lost)) + later + bytes(4096))
    log = CommitLog(tmp_path)
    scan = log.recover(0)
    assert scan.payloads == [b"good"]
    assert scan.tail is not None and "all-zero record header" in scan.tail.reason
    assert scan.tail.discarded_bytes == len(lost) + len(later), "the trailing zeros are not counted as set aside"
    assert segment.read_bytes() == good
    (folder,) = log.quarantine_folders()
    assert (folder / f"{segment.name}.tail").read_bytes() == bytes(len(lost)) + later


def test_a_record_torn_over_zeros_is_still_damage(tmp_path: Path) -> None:
    """Only part of the last record reached the disk before the cut, the rest of it reads as zeros: that is a torn
    record (its checksum fails), set aside as before, not a clean end."""
    good, torn = record_bytes(b"good"), record_bytes(b"torn-record-payload")
    segment = tmp_path / "00000000000000000001.log"
    segment.write_bytes(good + torn[:12] + bytes(4096))
    scan = CommitLog(tmp_path).recover(0)
    assert scan.payloads == [b"good"]
    assert scan.tail is not None and "checksum mismatch" in scan.tail.reason
    assert segment.read_bytes() == good


async def test_an_unacknowledged_record_does_not_come_back_after_the_next_crash(tmp_path: Path) -> None:
    """The resurrection case: records 1 and 2 were written, only 2 reached the disk (1's fsync never returned), so
    nothing was acknowledged. The next life writes a new record 1 of the same length; after another crash the old
    record 2 must not be read as if it followed it."""
    first = opened(tmp_path)
    first.append(b"unacknowledged-1")
    first.append(b"unacknowledged-2")
    crash(first)
    (_, segment), *_ = list_segments(tmp_path)
    data = bytearray(segment.read_bytes())
    first_length = len(record_bytes(b"unacknowledged-1"))
    data[:first_length] = bytes(first_length)  # record 1 never reached the disk, record 2 did
    segment.write_bytes(bytes(data))

    second = opened(tmp_path)
    assert second.recover(0).payloads == []
    await write(second, b"acknowledged--1")
    assert len(record_bytes(b"acknowledged--1")) + 1 == first_length
    await write(second, b"x")  # ends exactly where the old record 1 ended: the old record 2 would follow
    crash(second)

    third = CommitLog(tmp_path)
    scan = third.recover(0)
    assert scan.payloads == [b"acknowledged--1", b"x"]
    assert scan.tail is None


async def test_opening_a_segment_cuts_whatever_follows_its_good_records(tmp_path: Path) -> None:
    """`open_segment` itself, without recovery's quarantine: a reused file holding bytes past its good records (an
    old record behind zeros) is cut, and the cut fsynced, before the first write."""
    stale = record_bytes(b"stale-record")
    segment = tmp_path / "00000000000000000001.log"
    segment.write_bytes(bytes(len(stale)) + stale)
    log = CommitLog(tmp_path)
    log.open_segment(1)
    await write(log, b"new-record-x")  # the same length as the stale one
    crash(log)
    assert payloads_of(segment) == [b"new-record-x"]
    assert stale not in segment.read_bytes()


async def test_zeros_are_extended_ahead_across_rotations_and_retired_segments_lose_their_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commitlog, "PREALLOCATE_CHUNK_BYTES", 4096)
    monkeypatch.setattr(commitlog, "PREALLOCATE_LOW_WATER_BYTES", 2048)
    log = opened(tmp_path, segment_max_bytes=32 * 1024)
    payloads = [f"record-{i:05d}-".encode() * 20 for i in range(400)]
    for start in range(0, len(payloads), 25):
        await write(log, *payloads[start : start + 25])
        if start == 200:
            log.rotate_at(start + 26)  # a snapshot's rotation, besides the size bound's
    segments = list_segments(tmp_path)
    assert len(segments) > 3
    crash(log)
    *retired, current = [path for _, path in segments]
    for path in retired:
        assert path.stat().st_size == valid_end(path), f"{path.name} keeps no zeros once retired"
    end = valid_end(current)
    assert end < current.stat().st_size <= end + 4096 + 2048, "the segment being written has zeros ahead"
    scan = CommitLog(tmp_path).recover(0)
    assert scan.payloads == payloads and scan.tail is None


async def test_a_full_disk_while_writing_zeros_ahead_cuts_them_and_leaves_the_disk_to_the_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The zeros are an optimisation: failing to write them (here a test double that writes part of them, then
    meets a full disk) cuts what was written back off and appends the segment's next records; the fail-stop stays
    with a record's own write (`tests/host/test_disk_full.py`, a real full tmpfs)."""
    log = opened(tmp_path)
    await write(log, b"acknowledged")
    real_write_zeros = commitlog._write_zeros

    def full_disk(fd: int, start: int, stop: int) -> None:
        real_write_zeros(fd, start, start + 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(commitlog, "_write_zeros", full_disk)
    filler = b"f" * 4096
    for _ in range(PREALLOCATE_CHUNK_BYTES // len(filler) + 8):
        await write(log, filler)
    assert log.failure is None
    (_, segment), *_ = list_segments(tmp_path)
    end = valid_end(segment)
    assert segment.stat().st_size == end, "the partial zeros were cut and no more were written"
    log.rotate_at(log._next_offset)
    monkeypatch.setattr(commitlog, "_write_zeros", real_write_zeros)
    await write(log, b"next-segment")
    assert log._extension is not None and log._extension.done.wait(10)
    crash(log)
    *_, (_, current) = list_segments(tmp_path)
    assert current.stat().st_size > valid_end(current), "the next segment writes zeros ahead again"
    scan = CommitLog(tmp_path).recover(0)
    assert scan.payloads[0] == b"acknowledged" and scan.payloads[-1] == b"next-segment"
    assert scan.payloads[1:-1] == [filler] * (len(scan.payloads) - 2)
    assert scan.tail is None


def test_zeros_ahead_never_take_the_last_free_space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class NearlyFull:  # test double of os.statvfs_result: 3 chunks free, under the factor of 4
        f_frsize = 4096
        f_bavail = 3 * PREALLOCATE_CHUNK_BYTES // 4096

    monkeypatch.setattr(commitlog.os, "fstatvfs", lambda fd: NearlyFull())
    log = opened(tmp_path)
    log.append(b"one")
    crash(log)
    (_, segment), *_ = list_segments(tmp_path)
    assert segment.read_bytes() == record_bytes(b"one")
