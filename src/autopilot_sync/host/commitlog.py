"""The durable commit log: one length-prefixed, checksummed record per committed transaction.

Records are written to the OS as soon as a transaction commits, and made durable by a group-commit flusher: one
`fsync` covers every record written before it started, so many concurrent reducers pay for one disk flush. A commit
is acknowledged only after the flush that covers it. On start, the log is read up to the first torn or corrupt
record; what follows is moved aside (never silently dropped) and reported.

Layout: `<data>/commitlog/<first offset:020d>.log` segments; record = u32 LE payload length, u32 LE CRC-32 of the
payload, payload. A new segment starts after every snapshot, so old segments can be deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

_HEADER = struct.Struct("<II")
#: A record larger than this is treated as corruption (a garbage length prefix), not as an allocation request.
MAX_RECORD_BYTES = 256 * 1024 * 1024

log = logging.getLogger(__name__)


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


def read_records(path: Path) -> Iterator[tuple[int, bytes] | str]:
    """Yield (end position, payload) per good record, then a reason string if the segment ends badly."""
    data = path.read_bytes()
    position = 0
    while position < len(data):
        if position + _HEADER.size > len(data):
            yield f"torn record header at byte {position}"
            return
        size, checksum = _HEADER.unpack_from(data, position)
        start = position + _HEADER.size
        if size > MAX_RECORD_BYTES:
            yield f"implausible record length {size} at byte {position}"
            return
        if start + size > len(data):
            yield f"torn record at byte {position}: {size} bytes announced, {len(data) - start} present"
            return
        payload = data[start : start + size]
        if zlib.crc32(payload) != checksum:
            yield f"checksum mismatch in record at byte {position}"
            return
        position = start + size
        yield position, payload


class CommitLog:
    """Append-only segments with group-commit durability."""

    def __init__(self, directory: Path, *, fsync: bool = True) -> None:
        self.directory = directory
        self.fsync = fsync
        self._fd: int | None = None
        self._retired_fds: list[int] = []
        self._written = 0
        self._durable = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._flushing = False
        self._flusher: ThreadPoolExecutor | None = None
        self._failure: BaseException | None = None
        self.last_fsync_seconds = 0.0
        self.fsync_count = 0
        self.on_fsync: Callable[[float], None] | None = None
        #: Called once, on the event loop, when the log fails (the engine fans it out to failure listeners).
        self.on_failure: Callable[[BaseException], None] | None = None

    # ----- recovery -----

    def recover(self, after_offset: int) -> tuple[list[bytes], TailReport | None]:
        """Read every good record payload from segments that may hold offsets after `after_offset`.

        A bad record ends recovery: the rest of that segment and every later segment are moved into a
        `quarantine-<time>/` folder so an operator can inspect them, and the bad segment is cut at its last good
        record so appends continue from a clean end.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        segments = list_segments(self.directory)
        payloads: list[bytes] = []
        report: TailReport | None = None
        for number, (_first, path) in enumerate(segments):
            next_first = segments[number + 1][0] if number + 1 < len(segments) else None
            if next_first is not None and next_first <= after_offset + 1:
                continue
            good_end = 0
            reason: str | None = None
            for item in read_records(path):
                if isinstance(item, str):
                    reason = item
                    break
                good_end, payload = item
                payloads.append(payload)
            if reason is not None:
                report = self._quarantine(path, good_end, reason, [p for _, p in segments[number + 1 :]])
                break
        return payloads, report

    def _quarantine(self, path: Path, good_end: int, reason: str, later: list[Path]) -> TailReport:
        size = path.stat().st_size
        folder = self.directory / f"quarantine-{int(time.time())}"
        folder.mkdir(exist_ok=True)
        moved: list[Path] = []
        with path.open("rb") as source:
            source.seek(good_end)
            tail = source.read()
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
        _fsync_dir(self.directory)
        discarded = size - good_end + sum(p.stat().st_size for p in moved[1:])
        log.warning(
            "commit log %s: %s; kept %d bytes, set aside %d bytes in %s", path.name, reason, good_end, discarded, folder
        )
        return TailReport(path, good_end, discarded, reason, tuple(moved))

    # ----- writing -----

    def open_segment(self, first_offset: int) -> None:
        """Start appending to the segment whose first record is `first_offset` (reuses it when it exists)."""
        if self._fd is not None:
            self._retired_fds.append(self._fd)
        path = self.directory / _segment_name(first_offset)
        existing = [p for f, p in list_segments(self.directory) if f <= first_offset]
        if not path.exists() and existing:
            # Keep appending to the newest segment when it already covers this offset.
            path = existing[-1]
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        _fsync_dir(self.directory)

    def append(self, payload: bytes) -> int:
        """Write a record to the OS (not yet durable); returns its sequence number for `wait_durable`."""
        if self._failure is not None:
            raise StorageFailedError(f"commit log failed earlier: {self._failure}")
        if self._fd is None:
            raise StorageFailedError("commit log is not open")
        record = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        try:
            written = os.write(self._fd, record)
            if written != len(record):
                raise OSError(f"short write: {written} of {len(record)} bytes")
        except OSError as exc:
            self._fail(exc)
            raise StorageFailedError(f"commit log write failed: {exc}") from exc
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

    def on_durable(self, sequence: int) -> None:
        """Hook for the engine: called after each flush with the highest durable sequence (override or assign)."""

    def _start_flush(self) -> None:
        """Flush everything written so far: fsync in the flusher thread, then `_flush_done` on the event loop."""
        loop = asyncio.get_running_loop()
        self._flushing = True
        target = self._written
        fds = [*self._retired_fds, self._fd] if self._fd is not None else list(self._retired_fds)
        retired = list(self._retired_fds)
        if not self.fsync:
            loop.call_soon(self._flush_done, target, retired, None, 0.0)
            return
        if self._flusher is None:
            self._flusher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="commitlog-fsync")

        def flush() -> None:
            # Runs in the flusher thread; reports back to the loop directly (one wake-up, no future chaining).
            started = time.perf_counter()
            error: BaseException | None = None
            try:
                _fsync_all(fds)
            except OSError as exc:
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody is waiting any more
                loop.call_soon_threadsafe(self._flush_done, target, retired, error, time.perf_counter() - started)

        try:
            self._flusher.submit(flush)
        except RuntimeError as exc:  # the flusher was shut down (the log is closed)
            self._flushing = False
            self._fail(exc)

    def _flush_done(self, target: int, retired: list[int], error: BaseException | None, seconds: float) -> None:
        self._flushing = False
        if error is not None:
            self._fail(error)
            return
        if self._failure is not None:
            return
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
            self.on_durable(target)
        finally:
            still_waiting = []
            for sequence, future in self._waiters:
                if sequence <= target:
                    if not future.done():
                        future.set_result(None)
                else:
                    still_waiting.append((sequence, future))
            self._waiters = still_waiting
            if still_waiting:
                self._start_flush()

    def _fail(self, exc: BaseException) -> None:
        self._failure = exc
        log.error("commit log failed, host stops accepting writes: %s", exc)
        for _, future in self._waiters:
            if not future.done():
                future.set_exception(StorageFailedError(f"commit log failed: {exc}"))
        self._waiters = []
        if self.on_failure is not None:
            self.on_failure(exc)

    @property
    def failure(self) -> BaseException | None:
        """Why the log stopped accepting writes, if it did."""
        return self._failure

    def drop_segments_before(self, first_offset: int) -> None:
        """Delete segments whose records all precede `first_offset` (covered by a durable snapshot)."""
        segments = list_segments(self.directory)
        for number, (_, path) in enumerate(segments):
            next_first = segments[number + 1][0] if number + 1 < len(segments) else None
            if next_first is not None and next_first <= first_offset:
                path.unlink(missing_ok=True)

    def close(self) -> None:
        """Flush and close every file."""
        for fd in [*self._retired_fds, *([self._fd] if self._fd is not None else [])]:
            try:
                if self.fsync and self._failure is None:
                    os.fsync(fd)
            finally:
                os.close(fd)
        self._retired_fds = []
        self._fd = None
        if self._flusher is not None:
            self._flusher.shutdown(wait=True)
            self._flusher = None


def _fsync_all(fds: list[int]) -> None:
    for fd in fds:
        os.fsync(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
