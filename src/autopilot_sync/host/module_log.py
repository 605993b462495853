"""Module logs, kept as SpacetimeDB keeps them: what a module logged and how its reducers failed, in a bounded file.

What goes in (one JSON line each, the record shape of SpacetimeDB's `database_logger.rs`: `level` first, then `ts`
in microseconds, `target`, `filename`, `line_number`, `function` — the reducer — and `message`; a panic adds `trace`):
- Python `logging` from inside a reducer: the engine marks the reducer it runs (`running`), and `ModuleLogHandler`,
  on the root logger, keeps every record emitted while one runs;
- records on the `autopilot_sync.module_log` logger (a JavaScript module's `console.*`, sent there by its runner
  with `extra={"reducer": name}`; `database`, `source_file` and `source_line` may be given too);
- reducer failures, reported by the engine: a refusal (`ReducerError`, SpacetimeDB's `SenderError`) as an `Error`
  record injected by the host, a panic as a `Panic` record with the Python stack as `trace`.

Where: `<data_dir>/logs/module.log`, appended and flushed per record so the logs survive a restart (as SpacetimeDB's
on-disk logs do). When the next record would pass the size cap the file becomes `module.log.1` (replacing an older
one) and a new file starts, so module logs use at most twice the cap on disk. One record is bounded too (its
message is cut at `MAX_MESSAGE_CHARS`).

Readers: `read(n)` (the last `n` lines of both files, or all, streamed from disk in chunks: the files are opened
under the writer's lock, so a rotation meanwhile changes nothing a reader sees), and `follow(n)` (those lines, then
every new line as it is written; a follower that falls `FOLLOW_QUEUE` lines behind skips lines, as SpacetimeDB's
broadcast channel does).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import traceback
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

#: The logger a module's own log lines arrive on when they do not come from Python `logging` in a reducer.
MODULE_LOGGER = "autopilot_sync.module_log"
#: SpacetimeDB's `Record::SENTINEL_INJECTED_*`: the record was written by the host, not by the module.
INJECTED = "__spacetimedb__"
#: A log line's message is cut here (a record is one line; the file cap must hold many).
MAX_MESSAGE_CHARS = 16 * 1024
#: Lines a follower may fall behind before it skips some.
FOLLOW_QUEUE = 1024
#: Most lines of the past a follow starts with (SpacetimeDB's cap on the tail it reads into memory).
MAX_FOLLOW_TAIL = 2500
#: Bytes read from disk at a time by a reader.
READ_CHUNK = 64 * 1024
#: Frames kept in a panic's `trace`.
MAX_TRACE_FRAMES = 32
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
FILE_NAME = "module.log"

_running: ContextVar[tuple[str, str] | None] = ContextVar("autopilot_sync_running_reducer", default=None)
_module_log = logging.getLogger(MODULE_LOGGER)
# A module's lines are the module log's, not the host's own output: they do not reach the host's stderr (a busy
# module's refusals would flood it), and without a kept log (an engine in a test) they go nowhere.
_module_log.propagate = False
_module_log.addHandler(logging.NullHandler())


class running:  # noqa: N801 - used as `with running(...)`, like the generator-based context manager it replaced
    """Mark `reducer` of `database` as running: Python log records emitted meanwhile are module logs.

    A class rather than `contextlib.contextmanager`: entered around every reducer call, and the generator's
    creation, two steps and its `StopIteration` were ~2% of a one-event call (docs/performance.md "Round 6 —
    percall2").
    """

    __slots__ = ("_token", "_value")

    def __init__(self, database: str, reducer: str) -> None:
        self._value = (database, reducer)

    def __enter__(self) -> None:
        self._token = _running.set(self._value)

    def __exit__(self, *exc: object) -> None:
        _running.reset(self._token)


def reducer_failed(database: str, reducer: str, message: str) -> None:
    """Log a reducer's refusal as SpacetimeDB's host does (`log_reducer_error`: an injected `Error` record)."""
    _module_log.error(message, extra={"database": database, "reducer": reducer, "injected": True})


def reducer_panicked(database: str, reducer: str, error: BaseException) -> None:
    """Log a reducer's panic (any exception but a refusal) as a `Panic` record with its stack as `trace`."""
    frames = traceback.extract_tb(error.__traceback__)[-MAX_TRACE_FRAMES:]
    trace = [{"module_name": frame.filename, "func_name": frame.name} for frame in reversed(frames)]
    last = frames[-1] if frames else None
    _module_log.error(
        str(error) or type(error).__name__,
        extra={
            "database": database,
            "reducer": reducer,
            "panic_trace": trace,
            "source_file": os.path.basename(last.filename) if last else None,
            "source_line": last.lineno if last else None,
        },
    )


def _level(record: logging.LogRecord) -> str:
    if getattr(record, "panic_trace", None) is not None:
        return "Panic"
    if record.levelno >= logging.ERROR:
        return "Error"
    if record.levelno >= logging.WARNING:
        return "Warn"
    if record.levelno >= logging.INFO:
        return "Info"
    if record.levelno >= logging.DEBUG:
        return "Debug"
    return "Trace"


def record_line(record: logging.LogRecord, reducer: str | None) -> bytes:
    """The JSON line SpacetimeDB's logger writes for this record (fields that are None are left out, as there)."""
    message = record.getMessage()
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + " … (truncated)"
    injected = bool(getattr(record, "injected", False))
    from_module_logger = record.name == MODULE_LOGGER
    fields: dict[str, Any] = {
        "level": _level(record),
        "ts": int(record.created * 1_000_000),
        "target": INJECTED if injected else (None if from_module_logger else record.name),
        "filename": INJECTED if injected else getattr(record, "source_file", None),
        "line_number": getattr(record, "source_line", None),
        "function": reducer,
        "message": message,
    }
    if not from_module_logger:  # Python logging in a reducer: its own source location
        fields["filename"], fields["line_number"] = record.filename, record.lineno
    trace = getattr(record, "panic_trace", None)
    if trace is not None:
        fields["trace"] = trace
    body = {key: value for key, value in fields.items() if value is not None}
    return (json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str) + "\n").encode("utf-8")


@dataclass(eq=False)
class _Follower:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[bytes]
    skipped: int = 0

    def offer(self, line: bytes) -> None:
        if self.queue.full():
            self.skipped += 1
        else:
            self.queue.put_nowait(line)


class ModuleLog:
    """The module log file of one database (see the module docstring); safe to write from any thread."""

    def __init__(self, directory: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = directory / FILE_NAME
        self.rotated = directory / f"{FILE_NAME}.1"
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._followers: set[_Follower] = set()
        directory.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab")  # noqa: SIM115 - held open for the log's lifetime, closed by close()
        self._size = self._file.tell()
        if self._size and not _ends_a_line(self.path, self._size):
            self._file.write(b"\n")  # a crash cut the last record short: end it, so the next starts its own line
            self._size += 1

    def append(self, line: bytes) -> None:
        """Write one record line (rotating first when it would pass the cap) and hand it to every follower."""
        with self._lock:
            if self._file.closed:
                return
            if self._size and self._size + len(line) > self.max_bytes:
                self._file.close()
                os.replace(self.path, self.rotated)
                self._file = open(self.path, "ab")  # noqa: SIM115
                self._size = 0
            self._file.write(line)
            self._file.flush()
            self._size += len(line)
            followers = list(self._followers)
        for follower in followers:
            with contextlib.suppress(RuntimeError):  # its loop closed: it is gone
                follower.loop.call_soon_threadsafe(follower.offer, line)

    def tail(self, num_lines: int | None) -> list[bytes]:
        """The last `num_lines` lines (None: all) of the rotated file then the current one, in memory (for tests)."""
        with self.read(num_lines) as chunks:
            return b"".join(chunks).splitlines(keepends=True)

    def _open(self) -> list[tuple[BinaryIO, int]]:
        """Both files open, with their sizes now (call under the lock: a rotation cannot fall in between)."""
        opened: list[tuple[BinaryIO, int]] = []
        for path in (self.rotated, self.path):
            try:
                file = open(path, "rb")  # noqa: SIM115 - closed by the reader's context
            except FileNotFoundError:
                continue
            opened.append((file, os.fstat(file.fileno()).st_size))
        return opened

    @contextlib.contextmanager
    def read(self, num_lines: int | None) -> Iterator[Iterator[bytes]]:
        """The last `num_lines` lines (None: all) as chunks of at most `READ_CHUNK` bytes, read from disk as they are
        consumed (blocking: an async reader pulls them in a thread). Memory stays one chunk whatever the log holds."""
        with self._lock:
            opened = self._open()
        try:
            yield _chunks(_slices(opened, num_lines))
        finally:
            for file, _ in opened:
                file.close()

    @contextlib.contextmanager
    def follow(self, num_lines: int | None) -> Iterator[tuple[Iterator[bytes], asyncio.Queue[bytes]]]:
        """The last `num_lines` (none for None; at most `MAX_FOLLOW_TAIL`, as SpacetimeDB) as chunks, and a queue of
        every line written after them (nothing lost or repeated in between)."""
        follower = _Follower(asyncio.get_running_loop(), asyncio.Queue(FOLLOW_QUEUE))
        with self._lock:
            opened = self._open()
            self._followers.add(follower)
        try:
            yield _chunks(_slices(opened, 0 if num_lines is None else min(num_lines, MAX_FOLLOW_TAIL))), follower.queue
        finally:
            with self._lock:
                self._followers.discard(follower)
            for file, _ in opened:
                file.close()

    def clear(self) -> None:
        """Delete both files and start an empty one: the database they belong to was deleted (as on SpacetimeDB).

        Followers stay attached and see the next database's lines.
        """
        with self._lock:
            if self._file.closed:
                return
            self._file.close()
            self.rotated.unlink(missing_ok=True)
            self._file = open(self.path, "wb")  # noqa: SIM115 - held open for the log's lifetime, closed by close()
            self._size = 0

    @property
    def followers(self) -> int:
        """Readers following now."""
        return len(self._followers)

    def close(self) -> None:
        """Stop writing (later records are dropped)."""
        with self._lock:
            self._file.close()


def _ends_a_line(path: Path, size: int) -> bool:
    with open(path, "rb") as file:
        file.seek(size - 1)
        return file.read(1) == b"\n"


def _tail_start(file: BinaryIO, end: int, num_lines: int) -> tuple[int, int]:
    """Where the last `num_lines` lines of `file[0:end]` begin, and how many lines the file was short of them.

    Reads backwards in `READ_CHUNK` blocks, counting line ends; every line ends with `\\n` (records are written whole).
    """
    if end == 0:
        return 0, num_lines
    seen = 0
    position = end - 1  # the last line's own terminator starts no line
    while position > 0:
        size = min(READ_CHUNK, position)
        position -= size
        file.seek(position)
        block = file.read(size)
        index = len(block)
        while (index := block.rfind(b"\n", 0, index)) >= 0:
            seen += 1
            if seen == num_lines:
                return position + index + 1, 0
    return 0, max(num_lines - (seen + 1), 0)


def _slices(opened: list[tuple[BinaryIO, int]], num_lines: int | None) -> list[tuple[BinaryIO, int, int]]:
    """`(file, start, end)` byte ranges holding the last `num_lines` lines (None: everything), oldest first."""
    if num_lines is None:
        return [(file, 0, size) for file, size in opened]
    slices: list[tuple[BinaryIO, int, int]] = []
    remaining = num_lines
    for file, size in reversed(opened):
        if remaining == 0:
            break
        start, remaining = _tail_start(file, size, remaining)
        slices.insert(0, (file, start, size))
    return slices


def _chunks(slices: list[tuple[BinaryIO, int, int]]) -> Iterator[bytes]:
    for file, start, end in slices:
        file.seek(start)
        while start < end:
            chunk = file.read(min(READ_CHUNK, end - start))
            if not chunk:
                break  # cannot happen (the range was on disk when taken); never loop on it
            start += len(chunk)
            yield chunk


class ModuleLogHandler(logging.Handler):
    """Keeps the records that belong to one database's module in its `ModuleLog` (see the module docstring)."""

    def __init__(self, database: str, log: ModuleLog) -> None:
        super().__init__(logging.DEBUG)
        self.database = database
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        """Keep `record` when it is this database's module speaking; ignore every other record."""
        try:
            running_now = _running.get()
            database = getattr(record, "database", None) or (running_now[0] if running_now else None)
            reducer = getattr(record, "reducer", None) or (running_now[1] if running_now else None)
            if record.name != MODULE_LOGGER and running_now is None:
                return  # the host's own logging, not the module's
            if database is not None and database != self.database:
                return
            self.log.append(record_line(record, reducer))
        except Exception:  # a log line must never break a reducer
            self.handleError(record)


def install(database: str, log: ModuleLog) -> ModuleLogHandler:
    """Start keeping `database`'s module logs (a handler on the root logger; `uninstall` removes it)."""
    handler = ModuleLogHandler(database, log)
    logging.getLogger().addHandler(handler)  # Python logging in reducers
    _module_log.addHandler(handler)  # the module's own lines and reducer failures
    if _module_log.getEffectiveLevel() > logging.DEBUG:
        _module_log.setLevel(logging.DEBUG)  # every level of a module's own lines is kept, as SpacetimeDB does
    return handler


def uninstall(handler: ModuleLogHandler) -> None:
    """Stop keeping logs through `handler` and close its file."""
    logging.getLogger().removeHandler(handler)
    _module_log.removeHandler(handler)
    handler.log.close()
