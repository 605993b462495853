"""The durable commit log: one length-prefixed, checksummed record per committed transaction.

Records are written to the OS as soon as a transaction commits, and made durable by a group-commit flusher: one
`fsync` covers every record written before it started, so many concurrent reducers pay for one disk flush. A commit
is acknowledged only after the flush that covers it.

Layout: `<data>/commitlog/<first offset:020d>.log` segments; record = u32 LE payload length, u32 LE CRC-32 of the
payload, payload (never empty). One record holds one transaction offset, in order. A segment's records may be followed
by zeros: the log keeps a zeroed, already-written region (`PREALLOCATE_CHUNK_BYTES` at a time, written and fsynced in
the zeros thread) ahead of its write position and writes records over it, because an fsync that must also commit the
file's growth through the file system's journal costs ~1.3-2x one that only writes data blocks (docs/performance.md,
"Round 8 — prealloc"). An all-zero record header (length 0, CRC 0) is therefore the clean end of a segment; zeros after
the last record are not damage. Logs written before (appended, no zero tail) read the same.

A record's length prefix is all that finds the next one, so a segment never spans a snapshot: the engine asks for a
new segment at every snapshot, and the log starts one itself when the current segment would pass its size bound.
Segments wholly covered by the oldest retained snapshot are deleted, and start-up reads only the segments after the
snapshot it loaded.

On start, damage in a record a snapshot covers costs nothing (only a log written before rotation existed has such
records in a segment that is still read); the first torn or corrupt record after the snapshot ends the log, and what
follows is moved aside (never silently dropped) and reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import queue
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autopilot_sync.durable_files import fsync_directory

_HEADER = struct.Struct("<II")
#: A record larger than this is treated as corruption (a garbage length prefix), not as an allocation request.
MAX_RECORD_BYTES = 256 * 1024 * 1024
#: Zeros written ahead of the write position at a time, so records overwrite allocated blocks (one extension: ~1-2 ms
#: of pwrite and fsync in the zeros thread on this machine, per ~3,500 records of ~300 bytes).
PREALLOCATE_CHUNK_BYTES = 1024 * 1024
#: The next extension starts when fewer zeroed bytes than this are left ahead of the write position.
PREALLOCATE_LOW_WATER_BYTES = PREALLOCATE_CHUNK_BYTES // 2
#: Zeros are written ahead only while the file system has at least this many times their size free.
PREALLOCATE_FREE_SPACE_FACTOR = 4
#: Default size bound of one segment: past it the next record starts a new segment.
DEFAULT_SEGMENT_MAX_BYTES = 64 * 1024 * 1024
#: Default bound of an fsync run on the event loop itself (`CommitLog.inline_fsync_max_seconds`): 0, never. While an
#: fsync runs on the loop the host serves nothing else, and a disk that was fast can stall for seconds on the next one
#: (the official SDK's unsubscribe-mid-commit conformance test, whose disk is held, froze with a 1 ms bound).
DEFAULT_INLINE_FSYNC_MAX_SECONDS = 0.0
#: Consecutive fsyncs within that bound before a flush runs on the loop; doubled after each inline fsync past it.
INLINE_AFTER_FAST_FSYNCS = 8
#: The most that requirement grows to.
INLINE_AFTER_FAST_FSYNCS_MAX = 1024

log = logging.getLogger(__name__)


#: Told None once a record is durable, or the error that means it never will be (`CommitLog.when_durable`).
DurableCallback = Callable[[BaseException | None], None]


class StorageFailedError(RuntimeError):
    """The log could not be written or flushed: the host stops accepting writes (fail-stop) rather than lie."""


@dataclass(frozen=True, slots=True)
class TailReport:
    """What recovery found at the end of the log: how many bytes were set aside, and why."""

    segment: Path
    good_bytes: int
    discarded_bytes: int
    reason: str
    quarantined: tuple[Path, ...]


def _segment_name(first_offset: int) -> str:
    return f"{first_offset:020d}.log"


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """Segments in offset order."""
    out = []
    for path in directory.glob("*.log"):
        try:
            out.append((int(path.stem), path))
        except ValueError:
            continue
    return sorted(out)


@dataclass(frozen=True, slots=True)
class RecordDamage:
    """A record that cannot be trusted, where it starts, and where the next record starts if that is still known.

    `resume_at` is set only for a checksum mismatch under a plausible length prefix: the payload is damaged but the
    prefix may still find the next record. Everything else (torn, implausible length) ends what can be read.
    """

    position: int
    reason: str
    resume_at: int | None = None


def read_records(path: Path) -> Iterator[tuple[int, bytes] | RecordDamage]:
    """Yield (end position, payload) per good record, and a `RecordDamage` per bad one.

    After a damage without `resume_at` nothing more is yielded; after one with `resume_at` reading continues there,
    and the caller decides whether what follows is trustworthy. The records end at the end of the file or at an
    all-zero header (the preallocated tail), provided everything after it is zero too: a non-zero byte there is
    a record written after one that never reached the disk (no record is empty), so it is damage, reported at the
    zero header, like a torn record.
    """
    data = path.read_bytes()
    position = 0
    while position < len(data):
        if position + _HEADER.size > len(data):
            if not _zero_from(data, position):
                yield RecordDamage(position, f"torn record header at byte {position}")
            return
        size, checksum = _HEADER.unpack_from(data, position)
        start = position + _HEADER.size
        if size == 0:  # checked here only, once: scanning for zeros at every record would cost a pass per record
            if checksum == 0 and _zero_from(data, start):
                return
            what = "an all-zero record header" if checksum == 0 else "an empty record"
            yield RecordDamage(position, f"{what} at byte {position} followed by non-zero bytes")
            return
        if size > MAX_RECORD_BYTES:
            yield RecordDamage(position, f"implausible record length {size} at byte {position}")
            return
        if start + size > len(data):
            yield RecordDamage(
                position, f"torn record at byte {position}: {size} bytes announced, {len(data) - start} present"
            )
            return
        payload = data[start : start + size]
        end = start + size
        if zlib.crc32(payload) != checksum:
            yield RecordDamage(position, f"checksum mismatch in record at byte {position}", resume_at=end)
        else:
            yield end, payload
        position = end


def _zero_from(data: bytes, position: int) -> bool:
    """Whether every byte of `data` from `position` on is zero (the preallocated tail, or nothing)."""
    return data.count(0, position) == len(data) - position


def valid_end(path: Path) -> int:
    """Where the good records of a segment end: the end of its last good record before any damage or zero tail."""
    end = 0
    for item in read_records(path):
        if isinstance(item, RecordDamage):
            break
        end = item[0]
    return end


@dataclass(slots=True)
class RecoveryScan:
    """What `CommitLog.recover` read: the payloads to replay and how much work and damage it met."""

    #: Payloads of the records after the recovered-from offset, in order.
    payloads: list[bytes] = field(default_factory=list)
    #: The tail set aside at this start (None when the log ended cleanly).
    tail: TailReport | None = None
    #: Segments opened and read (segments wholly covered by the snapshot are never opened).
    segments_read: int = 0
    #: Good records read, including records of a read segment that the snapshot already covers.
    records_read: int = 0
    #: Damaged records skipped because the snapshot covers them (each was logged).
    covered_damage: int = 0


class CommitLog:
    """Append-only segments with group-commit durability.

    Where a flush runs: in the flusher thread while the log's fsyncs are slow (or not yet known), so the event loop
    keeps running reducers meanwhile; on the event loop itself, at the end of the loop iteration that asked for it,
    once the last `INLINE_AFTER_FAST_FSYNCS` fsyncs each took at most `inline_fsync_max_seconds`. The inline flush
    saves the two thread wake-ups of the hand-off (the flusher's and the loop's) and their CPU: per one-event durable
    call ~100 µs of the host's CPU and wall time on an idle disk (docs/performance.md, "Round 5 — percall"). It is
    bounded: the loop stalls at most for one fsync past the bound, after which flushes go back to the thread until
    the disk has been fast again for twice as many fsyncs as before (up to `INLINE_AFTER_FAST_FSYNCS_MAX`). Either
    way a flush covers every record written before it starts, and durability does not change.
    """

    def __init__(
        self,
        directory: Path,
        *,
        fsync: bool = True,
        segment_max_bytes: int = DEFAULT_SEGMENT_MAX_BYTES,
        inline_fsync_max_seconds: float = DEFAULT_INLINE_FSYNC_MAX_SECONDS,
    ) -> None:
        self.directory = directory
        self.fsync = fsync
        self.segment_max_bytes = segment_max_bytes
        #: An fsync at most this long lets the next flushes run on the event loop (0: always in the flusher thread).
        self.inline_fsync_max_seconds = inline_fsync_max_seconds
        self._fast_fsyncs = 0
        self._inline_after = INLINE_AFTER_FAST_FSYNCS
        self._fd: int | None = None
        #: The write position in the current segment: where its good records end and the next one goes.
        self._segment_bytes = 0
        #: Bytes of the current segment already written (records or zeros): a record ending at or before it
        #: overwrites allocated blocks.
        self._allocated = 0
        #: The zeros being written ahead in the zeros thread, if any.
        self._extension: _Extension | None = None
        self._segment_path = directory / _segment_name(0)
        #: False once writing zeros ahead failed in the current segment (a nearly full disk): appended from there.
        self._zeros_ahead = True
        self._next_offset = 0
        self._rotate_at: int | None = None
        #: A segment was created since the last flush: its directory entry must be made durable too.
        self._directory_dirty = False
        self._retired_fds: list[int] = []
        self._written = 0
        self._durable = 0
        #: (sequence, what to resolve once it is durable): a future, or a callback told None (or the failure)
        self._waiters: list[tuple[int, asyncio.Future[None] | DurableCallback]] = []
        self._flushing = False
        self._flusher: _Flusher | None = None
        #: The thread that writes zeros ahead and cuts retired segments' zeros: a flush never queues behind it.
        self._zeroer: _Flusher | None = None
        self._failure: BaseException | None = None
        self.last_fsync_seconds = 0.0
        self.fsync_count = 0
        self.on_fsync: Callable[[float], None] | None = None
        #: Called on the event loop after each flush with the highest durable sequence, before the waiters of that
        #: flush resume (the engine's `DurableCommits` hands the transactions to commit listeners from here).
        self.on_durable: Callable[[int], None] | None = None
        #: Called once, on the event loop, when the log fails (the engine fans it out to failure listeners).
        self.on_failure: Callable[[BaseException], None] | None = None

    # ----- recovery -----

    def recover(self, after_offset: int, offset_of: Callable[[bytes], int] | None = None) -> RecoveryScan:
        """Read the records after `after_offset` (the loaded snapshot's offset; 0 without one).

        Segments wholly covered by `after_offset` are not opened. In a segment that starts at or before it (only a
        log written before rotation existed, or one whose newest snapshot is unusable), `offset_of` reads each
        record's offset, so covered records are skipped undecoded and a checksum mismatch under an intact length
        prefix is skipped when the very next record shows the damaged one was covered. Any other bad record ends
        recovery: the rest of that segment and every later segment are moved into a `quarantine-<time>/` folder so
        an operator can inspect them, and the bad segment is cut at the damaged record so appends continue from a
        clean end.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        segments = list_segments(self.directory)
        scan = RecoveryScan()
        for number, (first, path) in enumerate(segments):
            next_first = segments[number + 1][0] if number + 1 < len(segments) else None
            if next_first is not None and next_first <= after_offset + 1:
                continue
            scan.segments_read += 1
            damage = self._scan_segment(path, first, after_offset, offset_of, scan)
            if damage is not None:
                later = [p for _, p in segments[number + 1 :]]
                scan.tail = self._quarantine(path, damage.position, damage.reason, later)
                break
        return scan

    def _scan_segment(
        self,
        path: Path,
        first: int,
        after_offset: int,
        offset_of: Callable[[bytes], int] | None,
        scan: RecoveryScan,
    ) -> RecordDamage | None:
        """Add one segment's records to `scan`; the damage that ends the log here, if any."""
        may_hold_covered = offset_of is not None and first <= after_offset
        suspect: RecordDamage | None = None
        for item in read_records(path):
            if isinstance(item, RecordDamage):
                if suspect is None and item.resume_at is not None and may_hold_covered:
                    suspect = item  # judged by the next record: covered or not
                    continue
                return suspect or item
            _end, payload = item
            scan.records_read += 1
            offset = offset_of(payload) if offset_of is not None else None
            if suspect is not None:
                # Records are in offset order: the damaged one precedes `offset`, so it is covered when
                # `offset - 1 <= after_offset`.
                if offset is None or offset > after_offset + 1:
                    return suspect
                log.warning(
                    "commit log %s: %s, in history the snapshot at offset %d covers; skipped, nothing lost",
                    path.name,
                    suspect.reason,
                    after_offset,
                )
                scan.covered_damage += 1
                suspect = None
            if offset is None or offset > after_offset:
                scan.payloads.append(payload)
        return suspect

    def _quarantine(self, path: Path, good_end: int, reason: str, later: Sequence[Path]) -> TailReport:
        folder = self.directory / f"quarantine-{int(time.time())}"
        folder.mkdir(exist_ok=True)
        moved: list[Path] = []
        with path.open("rb") as source:
            source.seek(good_end)
            # The zeros written ahead hold nothing: what is set aside (and counted) ends at the last non-zero byte.
            tail = source.read().rstrip(b"\0")
        (folder / f"{path.name}.tail").write_bytes(tail)
        moved.append(folder / f"{path.name}.tail")
        with path.open("r+b") as handle:
            handle.truncate(good_end)
            handle.flush()
            os.fsync(handle.fileno())
        for later_path in later:
            target = folder / later_path.name
            later_path.rename(target)
            moved.append(target)
        fsync_directory(self.directory)
        discarded = len(tail) + sum(len(p.read_bytes().rstrip(b"\0")) for p in moved[1:])
        log.error(
            "commit log %s: %s; kept %d bytes, SET ASIDE %d bytes (%d files) in %s: commits in them are not served",
            path.name,
            reason,
            good_end,
            discarded,
            len(moved),
            folder,
        )
        return TailReport(path, good_end, discarded, reason, tuple(moved))

    # ----- writing -----

    def open_segment(self, first_offset: int) -> None:
        """Append from now on to a new segment whose first record is `first_offset`.

        Reuses the file only when it already has that name (it holds no good record then: anything in it would have
        been recovered past `first_offset`). Whatever such a file holds past its good records (zeros, or bytes of a
        record written but never acknowledged in a previous life) is cut off and the cut fsynced before any write:
        otherwise a new record of the same length as an old unacknowledged one could make the old record after it
        readable again after the next crash, as if it followed the new ones. The first zeros ahead are written
        at once (in the zeros thread), as the first record may be a while away.
        """
        self._open(first_offset)
        self._extend_ahead()

    def _open(self, first_offset: int) -> None:
        """`open_segment` without writing zeros ahead yet: a rotation has its first record to write first (zeros
        queued before it would only be cancelled by it)."""
        path = self.directory / _segment_name(first_offset)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            end = 0
            if os.fstat(fd).st_size > 0:
                end = valid_end(path)
                os.ftruncate(fd, end)
                os.fsync(fd)
        except OSError:
            os.close(fd)
            raise
        if self._fd is not None:
            self._retired_fds.append(self._fd)
            self._cut_zeros_after(self._segment_path, self._segment_bytes)
        self._fd = fd
        self._segment_bytes = end
        self._allocated = end
        self._segment_path = path
        self._zeros_ahead = True
        # An extension still running writes zeros past the retired segment's last record (every record of it was
        # written after settling with it): harmless, and its flush fsyncs that file anyway.
        self._extension = None
        self._next_offset = first_offset
        self._rotate_at = None
        self._directory_dirty = True

    def _extend_ahead(self) -> None:
        """Write the next `PREALLOCATE_CHUNK_BYTES` of zeros past what the segment has, in the zeros thread.

        Never past the segment's size bound. The zeros are fsynced there too, so the flushes of the records that
        later overwrite them commit data blocks only, not the file's growth.
        """
        if self.segment_max_bytes - self._allocated < _HEADER.size:
            return
        if self._zeroer is None:
            self._zeroer = _Flusher("commitlog-zeros")
        extension = _Extension(self._segment_path, self._allocated, self.segment_max_bytes, self.fsync)
        try:
            self._zeroer.submit(extension.run)
        except RuntimeError:  # the log is closed: nothing more will be written
            return
        self._extension = extension

    def _cut_zeros_after(self, path: Path, end: int) -> None:
        """Cut a retired segment's zeros after its last record (`end`), in the zeros thread: only the segment being
        written keeps a zero tail, so a log that rotates at every snapshot does not keep a chunk of zeros per segment.

        After the extension that may still be running on it (the thread runs jobs in order). Losing the cut (a crash
        before it is on disk, or an error) costs only disk space: the zeros read as the segment's end.
        """
        if self._zeroer is None:
            self._zeroer = _Flusher("commitlog-zeros")
        sync = self.fsync

        def cut() -> None:
            try:
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.ftruncate(fd, end)
                    if sync:
                        os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                log.warning("commit log: could not cut the zeros after the last record of %s: %s", path.name, exc)

        with contextlib.suppress(RuntimeError):  # the log is closed: the zeros stay, read as the end
            self._zeroer.submit(cut)

    def _write_record(self, record: bytes, end: int) -> None:
        """Write `record` at the write position (ending at `end`), never under zeros written after it.

        A record that reaches past the zeros already written while an extension has not written its own yet is
        written under the extension's lock, and the extension then starts its zeros after it (`_Extension.floor`):
        the loop waits at most for one zero write in progress, never for an fsync. Then takes what the extension has
        zeroed; after an extension that failed, the segment's next records are appended without zeros ahead.
        """
        assert self._fd is not None
        extension = self._extension
        if extension is not None and end > self._allocated and not extension.written:
            with extension.lock:  # the thread holds it for one zero write at most
                if not extension.written:
                    _write_all(self._fd, record, self._segment_bytes)
                    extension.floor = end
                    record = b""
        if record:
            _write_all(self._fd, record, self._segment_bytes)
        if extension is not None and extension.written:
            # Its fsync may still run: the next extension queues behind it, so the zeros keep ahead of a burst.
            self._allocated = max(self._allocated, extension.stop)
            self._extension = None
            if extension.failed:
                self._zeros_ahead = False  # until the next segment

    def rotate_at(self, first_offset: int) -> None:
        """Start a new segment with the record of `first_offset` (the next one written): a snapshot was taken.

        The new file is created by that record's `append`, so a failure to create it fails that write (which rolls
        back) instead of a transaction that already committed.
        """
        if first_offset != self._next_offset:
            raise ValueError(f"rotation at offset {first_offset}, but the next record is {self._next_offset}")
        self._rotate_at = first_offset

    def append(self, payload: bytes) -> int:
        """Write a record to the OS (not yet durable); returns its sequence number for `wait_durable`."""
        if self._failure is not None:
            raise StorageFailedError(f"commit log failed earlier: {self._failure}")
        if self._fd is None:
            raise StorageFailedError("commit log is not open")
        if not payload:
            raise ValueError("a commit-log record is never empty (an all-zero header ends a segment)")
        record = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        try:
            if self._rotate_at is not None or (
                self._segment_bytes > 0 and self._segment_bytes + len(record) > self.segment_max_bytes
            ):
                self._open(self._next_offset)
            end = self._segment_bytes + len(record)
            self._write_record(record, end)
        except OSError as exc:
            self._fail(exc)
            raise StorageFailedError(f"commit log write failed: {exc}") from exc
        self._segment_bytes = end
        self._allocated = max(self._allocated, end)
        if self._extension is None and self._zeros_ahead and self._allocated - end < PREALLOCATE_LOW_WATER_BYTES:
            self._extend_ahead()
        self._next_offset += 1
        self._written += 1
        return self._written

    async def wait_durable(self, sequence: int) -> None:
        """Return once the record numbered `sequence` (from `append`) is on disk."""
        future = self.durable_future(sequence)
        if future is not None:
            await future

    def durable_future(self, sequence: int) -> asyncio.Future[None] | None:
        """A future resolved once record `sequence` is on disk (None when it already is); starts a flush if idle.

        The flush starts here, synchronously: a lone commit's fsync is already running in the flusher thread when
        this returns, without waiting for the event loop to schedule a task first.
        """
        if self._failure is not None:
            raise StorageFailedError(f"commit log failed: {self._failure}")
        if sequence <= self._durable:
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((sequence, future))
        if not self._flushing:
            self._start_flush()
        return future

    def when_durable(self, sequence: int, callback: DurableCallback) -> bool:
        """Call `callback(None)` on the event loop once record `sequence` is on disk (`callback(error)` if the log fails
        first); False, without calling it, when the record already is durable. Starts a flush if idle.

        `durable_future` without the future: the callback runs right after the flush that covers it (after
        `on_durable`), not one loop iteration later, and no future or context copy is made per call. What the reducer
        call path waits with (`HostEngine.start_call`). Raises StorageFailedError when the log failed earlier.
        """
        if self._failure is not None:
            raise StorageFailedError(f"commit log failed: {self._failure}")
        if sequence <= self._durable:
            return False
        self._waiters.append((sequence, callback))
        if not self._flushing:
            self._start_flush()
        return True

    @property
    def flushes_inline(self) -> bool:
        """Whether the next flush runs on the event loop (the disk's recent fsyncs were within the bound)."""
        return self.fsync and self.inline_fsync_max_seconds > 0 and self._fast_fsyncs >= self._inline_after

    def _start_flush(self) -> None:
        """Flush everything written so far: fsync in the flusher thread (or on the loop, `flushes_inline`), then
        `_flush_done` on the event loop."""
        loop = asyncio.get_running_loop()
        self._flushing = True
        if self.flushes_inline:
            # At the end of this loop iteration: the calls handled in it share the fsync (group commit).
            loop.call_soon(self._flush_inline)
            return
        target = self._written
        fds = [*self._retired_fds, self._fd] if self._fd is not None else list(self._retired_fds)
        retired = list(self._retired_fds)
        directory = self.directory if self._directory_dirty else None
        self._directory_dirty = False
        if not self.fsync:
            loop.call_soon(self._flush_done, target, retired, None, 0.0)
            return
        if self._flusher is None:
            self._flusher = _Flusher()

        def flush() -> None:
            # Runs in the flusher thread; reports back to the loop directly (one wake-up, no future chaining).
            error, seconds = _fsync_timed(fds, directory)
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody is waiting any more
                loop.call_soon_threadsafe(self._flush_done, target, retired, error, seconds)

        try:
            self._flusher.submit(flush)
        except RuntimeError as exc:  # the flusher was shut down (the log is closed)
            self._flushing = False
            self._fail(exc)

    def _flush_inline(self) -> None:
        """The flush on the event loop: everything written by now, fsynced here, then `_flush_done` at once."""
        if self._failure is not None:
            self._flushing = False
            return
        target = self._written
        fds = [*self._retired_fds, self._fd] if self._fd is not None else list(self._retired_fds)
        directory = self.directory if self._directory_dirty else None
        self._directory_dirty = False
        error, seconds = _fsync_timed(fds, directory)
        self._flush_done(target, list(self._retired_fds), error, seconds, inline=True)

    def _flush_done(
        self, target: int, retired: list[int], error: BaseException | None, seconds: float, inline: bool = False
    ) -> None:
        self._flushing = False
        if error is not None:
            self._fail(error)
            return
        if self._failure is not None:
            return
        if seconds <= self.inline_fsync_max_seconds:
            self._fast_fsyncs += 1
        else:
            self._fast_fsyncs = 0
            if inline:  # the loop stalled on this one: wait longer before the next inline flush
                self._inline_after = min(self._inline_after * 2, INLINE_AFTER_FAST_FSYNCS_MAX)
        self.last_fsync_seconds = seconds
        self.fsync_count += 1
        if self.on_fsync is not None:
            self.on_fsync(seconds)
        for fd in retired:
            if fd in self._retired_fds:  # `close` may have closed it meanwhile
                self._retired_fds.remove(fd)
                os.close(fd)
        self._durable = target
        try:
            if self.on_durable is not None:
                self.on_durable(target)
        finally:
            still_waiting = []
            callbacks: list[DurableCallback] = []
            for sequence, waiter in self._waiters:
                if sequence > target:
                    still_waiting.append((sequence, waiter))
                elif isinstance(waiter, asyncio.Future):
                    if not waiter.done():
                        waiter.set_result(None)
                else:
                    callbacks.append(waiter)
            self._waiters = still_waiting
            if still_waiting:
                self._start_flush()
            # After the bookkeeping: a callback may write and wait again (a new waiter, a new flush).
            for callback in callbacks:
                _tell(callback, None)

    def _fail(self, exc: BaseException) -> None:
        self._failure = exc
        log.error("commit log failed, host stops accepting writes: %s", exc)
        waiters, self._waiters = self._waiters, []
        callbacks: list[DurableCallback] = []
        for _, waiter in waiters:
            if not isinstance(waiter, asyncio.Future):
                callbacks.append(waiter)
            elif not waiter.done():
                waiter.set_exception(StorageFailedError(f"commit log failed: {exc}"))
        if self.on_failure is not None:
            self.on_failure(exc)
        for callback in callbacks:  # after the failure listeners, as a future's callbacks would run
            _tell(callback, StorageFailedError(f"commit log failed: {exc}"))

    @property
    def failure(self) -> BaseException | None:
        """Why the log stopped accepting writes, if it did."""
        return self._failure

    def quarantine_folders(self) -> list[Path]:
        """The `quarantine-<time>/` folders of set-aside tails still in the log directory (for an operator)."""
        if not self.directory.is_dir():
            return []
        return sorted(path for path in self.directory.glob("quarantine-*") if path.is_dir())

    def drop_segments_before(self, first_offset: int) -> int:
        """Delete segments whose records all precede `first_offset` (covered by a durable snapshot); how many.

        A segment is known to end before `first_offset` when the next segment starts at or before it; the newest
        segment (the one being written) has no next one and is never deleted.
        """
        segments = list_segments(self.directory)
        dropped = 0
        for number, (_, path) in enumerate(segments):
            next_first = segments[number + 1][0] if number + 1 < len(segments) else None
            if next_first is not None and next_first <= first_offset:
                path.unlink(missing_ok=True)
                dropped += 1
        if dropped:
            log.info("commit log: deleted %d segment(s) before offset %d (snapshot-covered)", dropped, first_offset)
        return dropped

    def close(self) -> None:
        """Flush and close every file; the zeros after the last record of the segment being written are cut off first
        (after both threads have finished their work: the zeros thread may still be writing some)."""
        for thread in (self._flusher, self._zeroer):
            if thread is not None:
                thread.shutdown(wait=True)
        self._flusher = self._zeroer = None
        if self._fd is not None and self._failure is None:
            with contextlib.suppress(OSError):  # the zeros stay: they read as the end
                os.ftruncate(self._fd, self._segment_bytes)
        for fd in [*self._retired_fds, *([self._fd] if self._fd is not None else [])]:
            try:
                if self.fsync and self._failure is None:
                    os.fsync(fd)
            finally:
                os.close(fd)
        self._retired_fds = []
        self._fd = None
        if self._directory_dirty and self.fsync and self._failure is None:
            fsync_directory(self.directory)
        self._directory_dirty = False


class _Extension:
    """One run of zeros written ahead of the log's write position, in the zeros thread (`CommitLog._extend_ahead`).

    Through its own descriptor (its own open file description): an fsync error it meets is still reported to the
    flush that fsyncs the log's descriptor, so no record is acknowledged over a lost write. `lock` makes the zero
    write and a record written into the region before it exclusive: zeros never cover a record.
    """

    def __init__(self, path: Path, start: int, limit: int, sync: bool) -> None:
        self.path = path
        #: Never past the segment's size bound.
        self.limit = limit
        self.sync = sync
        self.lock = threading.Lock()
        #: Where the zeros start: what the segment had when asked for, or past the records written before they were
        #: (a burst of records may overtake the thread).
        self.floor = start
        #: Where the zeros end once written: `PREALLOCATE_CHUNK_BYTES` past `floor` at that time, so the zeros always
        #: lie ahead of the records, however many overtook the thread.
        self.stop = start
        #: Set (before `written`) when no zeros could be written: the segment's next records are appended.
        self.failed = False
        self.written = False
        self.done = threading.Event()

    def run(self) -> None:
        """Write the zeros, then fsync them (in the zeros thread).

        Zeros never take the disk's last free space (`PREALLOCATE_FREE_SPACE_FACTOR`), and a failed zero write cuts
        what it wrote back off: a nearly full disk is left to the records themselves, whose own failed write then
        fails the log as before (the zeros are an optimisation, never the reason the host stops).
        """
        try:
            fd = os.open(self.path, os.O_WRONLY)
        except OSError as exc:
            self._failed(exc)
            return
        try:
            with self.lock:
                stop = min(self.floor + PREALLOCATE_CHUNK_BYTES, self.limit)
                try:
                    if stop > self.floor:
                        space = os.fstatvfs(fd)
                        if space.f_bavail * space.f_frsize < (stop - self.floor) * PREALLOCATE_FREE_SPACE_FACTOR:
                            raise OSError(errno.ENOSPC, "too little free space to write zeros ahead")
                        _write_zeros(fd, self.floor, stop)
                except OSError:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, self.floor)
                    stop = self.floor
                    self.failed = True
                    raise
                finally:
                    self.stop = max(stop, self.floor)
                    self.written = True
            if self.sync:
                os.fsync(fd)
        except OSError as exc:
            self._failed(exc)
        finally:
            os.close(fd)
            self.done.set()

    def _failed(self, exc: OSError) -> None:
        log.warning(
            "commit log: no zeros ahead in %s (%s): its records are appended, each fsync committing the file's growth",
            self.path.name,
            exc,
        )
        self.failed = True
        self.written = True
        self.done.set()


def _write_zeros(fd: int, start: int, stop: int) -> None:
    _write_all(fd, bytes(stop - start), start)


def _write_all(fd: int, data: bytes, position: int) -> None:
    """Write all of `data` at `position` (a short write that wrote nothing is an error)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, position)
        if written <= 0:
            raise OSError(f"short write at byte {position}: {written} of {len(view)} bytes")
        view = view[written:]
        position += written


class _Flusher:
    """One thread running the log's jobs in order, fed through a `queue.SimpleQueue`: the fsyncs of flushes in one
    (`commitlog-fsync`), the zeros written ahead and cut in another (`commitlog-zeros`), so a flush never waits for
    a megabyte of zeros.

    Why not a `ThreadPoolExecutor`: its `submit` builds a future and a work item and wakes the worker through a
    Python-level condition; per one-event call that hand-off cost ~60 µs of CPU and ~190 µs of wall time on this
    machine, the dedicated thread ~35 µs and ~115 µs (measured with the fsync itself on tmpfs). A daemon thread: a
    process that exits without closing the log must not hang on it (written records are the OS's by then).
    """

    def __init__(self, name: str = "commitlog-fsync") -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception:  # a job reports its own errors; this only keeps the thread alive
                log.exception("commit-log flush job raised")

    def submit(self, job: Callable[[], None]) -> None:
        """Run `job` in this thread, after the jobs before it; RuntimeError once shut down."""
        if self._closed:
            raise RuntimeError("commit-log flusher is shut down")
        self._jobs.put(job)

    def shutdown(self, wait: bool = True) -> None:
        """Run the jobs already submitted, then stop the thread (waiting for it when `wait`)."""
        if not self._closed:
            self._closed = True
            self._jobs.put(None)
        if wait:
            self._thread.join()


def _tell(callback: DurableCallback, error: BaseException | None) -> None:
    """Run a `when_durable` callback; one that raises is logged and does not stop the others."""
    try:
        callback(error)
    except Exception:
        log.exception("commit-log durability callback raised")


def _fsync_timed(fds: list[int], directory: Path | None) -> tuple[OSError | None, float]:
    """One flush's disk work, wherever it runs (the flusher thread or the loop): fsync `fds`, then `directory` when a
    segment was created; the error it met, if any, and how long it took."""
    started = time.perf_counter()
    try:
        _fsync_all(fds)
        if directory is not None:
            fsync_directory(directory)
    except OSError as exc:
        return exc, time.perf_counter() - started
    return None, time.perf_counter() - started


def _fsync_all(fds: list[int]) -> None:
    for fd in fds:
        os.fsync(fd)
