"""Power-cut emulation for one directory (the host's commit log), injected into a process without changing its code.

A SIGKILL alone loses nothing a process wrote: the bytes sit in the kernel's page cache, which outlives the process.
A power cut also loses what the page cache had not written to the disk yet, i.e. everything written since the last
fsync. To test that promise ("an acknowledged commit survives a power cut") on an ordinary machine, this module
wraps `os.open`, `os.write`, `os.writev`, `os.pwrite`, `os.ftruncate`, `os.fsync`, `os.fdatasync` and `os.close` so
that, for files opened for writing under one directory, written bytes stay in this process's memory and reach the file
only at `fsync`, in the order they were written (an appending write at the file's end then, a positioned one at its
offset: the commit log writes its records over zeros it wrote ahead). A SIGKILL then loses exactly the unfsynced bytes,
as a power cut would; a clean exit keeps them (no power was lost).

Two optional faults sharpen it:

- **writeback** (probability per write): the write may also push a random prefix of the pending bytes to the file
  without fsync (the kernel writing dirty pages back early), so after the kill the file can end inside an unfsynced
  record (a torn write) or hold whole records nobody was told about (an unknown outcome); over zeros written ahead,
  a record cut inside reads as a torn (checksum-failing) record, one never reached as the zero end;
- **fsync delay** (seconds): every fsync of an emulated file first waits (a slow disk), which opens a deterministic
  window between a write and its durability instead of relying on microsecond timing.

A **ledger** file (outside the emulated directory, written at once) always holds the number of pending bytes, so a
verifier can kill the process exactly when something is unfsynced and afterwards read how many bytes the cut lost.

The host child gets it through `powercut_site/sitecustomize.py` on its `PYTHONPATH` (see `host_environment`); the
product's code path is untouched. It prints `BANNER` once per file it emulates, so a run can prove the fault was
really active. Limits (none matter for the commit log): only descriptors opened for writing with `os.open` are
emulated; reading the file back in the same process does not see pending bytes (the host reads its log only at
start); `fstat` sizes exclude pending bytes; an `ftruncate` first writes the file's pending bytes, as an early
writeback could (the log cuts only the zeros after a segment's last record); the pending bytes of a file are one
sequence however many descriptors wrote them; directory operations (create, rename, unlink) are not delayed.
"""

from __future__ import annotations

import atexit
import os
import random
import stat
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_DIRECTORY = "AUTOPILOT_SYNC_POWERCUT_DIR"
ENV_WRITEBACK = "AUTOPILOT_SYNC_POWERCUT_WRITEBACK"
ENV_FSYNC_DELAY = "AUTOPILOT_SYNC_POWERCUT_FSYNC_DELAY_SECONDS"
ENV_SEED = "AUTOPILOT_SYNC_POWERCUT_SEED"
ENV_LEDGER = "AUTOPILOT_SYNC_POWERCUT_LEDGER"
#: Printed (stderr) the first time a file is emulated: `<BANNER> <path>`.
BANNER = "powercut: unfsynced writes stay in memory until fsync:"
#: The folder holding `sitecustomize.py`; putting it on a child's PYTHONPATH installs the emulation there.
SITE_DIRECTORY = Path(__file__).with_name("powercut_site")


@dataclass(frozen=True, slots=True)
class PowerCutFault:
    """How a verification run puts the host under power-cut semantics (see the module docstring)."""

    writeback: float = 0.3
    """Probability that a write also pushes a random prefix of the pending bytes to the file (torn tails)."""
    fsync_delay: float = 0.05
    """Seconds every fsync of the commit log waits first (a slow disk): each commit leaves its bytes unfsynced for
    that long, so a kill timed by the ledger surely cuts something (group commit keeps the throughput)."""


def host_environment(
    directory: Path, *, writeback: float = 0.0, fsync_delay: float = 0.0, seed: int = 0, ledger: Path | None = None
) -> dict[str, str]:
    """The environment that puts a child Python process under power-cut semantics for files under `directory`."""
    inherited = os.environ.get("PYTHONPATH")
    return {
        "PYTHONPATH": os.pathsep.join([str(SITE_DIRECTORY), *([inherited] if inherited else [])]),
        ENV_DIRECTORY: str(directory),
        ENV_WRITEBACK: repr(writeback),
        ENV_FSYNC_DELAY: repr(fsync_delay),
        ENV_SEED: str(seed),
        **({ENV_LEDGER: str(ledger)} if ledger is not None else {}),
    }


def read_ledger(path: Path) -> int | None:
    """Pending (unfsynced) bytes the emulated process last reported; None before it wrote its ledger."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


@dataclass
class _Write:
    """One write not on the file yet: at `offset`, or at the file's end when that is None (an appending write)."""

    offset: int | None
    data: bytes


@dataclass
class _File:
    """One emulated file (by inode): our own descriptor to it and the writes not made to it yet, oldest first."""

    path: str
    sink: int
    users: int = 0
    pending: list[_Write] = field(default_factory=list)
    pending_bytes: int = 0


class PowerCut:
    """The emulation for one directory; `install()` puts it in front of the `os` functions of this process."""

    def __init__(
        self,
        directory: Path,
        *,
        writeback: float = 0.0,
        fsync_delay: float = 0.0,
        rng: random.Random | None = None,
        ledger: Path | None = None,
    ) -> None:
        if not 0.0 <= writeback <= 1.0:
            raise ValueError(f"writeback probability must be in [0, 1], not {writeback}")
        if fsync_delay < 0:
            raise ValueError(f"fsync delay must be >= 0, not {fsync_delay}")
        self.prefix = os.path.join(os.path.realpath(directory), "")
        self.writeback = writeback
        self.fsync_delay = fsync_delay
        self.rng = rng or random.Random()
        self._lock = threading.Lock()
        self._files: dict[tuple[int, int], _File] = {}
        #: Emulated descriptor -> (its file's key, whether it appends).
        self._fds: dict[int, tuple[tuple[int, int], bool]] = {}
        self._real_open = os.open
        self._real_write = os.write
        self._real_writev = os.writev
        self._real_pwrite = os.pwrite
        self._real_ftruncate = os.ftruncate
        self._real_fsync = os.fsync
        self._real_fdatasync = os.fdatasync
        self._real_close = os.close
        self._pending_total = 0
        self._ledger: int | None = None
        if ledger is not None:
            self._ledger = os.open(ledger, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            self._note()

    # ----- installation -----

    def install(self) -> None:
        """Replace the `os` functions (every later caller, including modules imported earlier, goes through us)."""
        replacements: dict[str, Callable[..., Any]] = {
            "open": self.open,
            "write": self.write,
            "writev": self.writev,
            "pwrite": self.pwrite,
            "ftruncate": self.ftruncate,
            "fsync": self.fsync,
            "fdatasync": self.fdatasync,
            "close": self.close,
        }
        for name, function in replacements.items():
            setattr(os, name, function)
        atexit.register(self.settle)

    # ----- the wrapped functions -----

    def open(self, path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        """`os.open`; a descriptor that writes a regular file under the directory becomes emulated."""
        fd = self._real_open(path, flags, mode, dir_fd=dir_fd)
        if fd in self._fds:  # a number reused after a close we did not see
            with self._lock:
                self._forget(fd)
        if not flags & (os.O_WRONLY | os.O_RDWR) or dir_fd is not None:
            return fd
        if isinstance(path, int):
            return fd
        real = os.path.realpath(os.fsdecode(os.fspath(path)))
        if not real.startswith(self.prefix):
            return fd
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return fd
        key = (info.st_dev, info.st_ino)
        with self._lock:
            emulated = self._files.get(key)
            if emulated is None:
                sink = self._real_open(real, os.O_WRONLY | os.O_CLOEXEC)
                emulated = self._files[key] = _File(real, sink)
                print(f"{BANNER} {real}", file=sys.stderr, flush=True)
            emulated.users += 1
            self._fds[fd] = (key, bool(flags & os.O_APPEND))
        return fd

    def write(self, fd: int, data: Any) -> int:
        """`os.write`; for an emulated descriptor the bytes wait in memory (the whole write is always accepted)."""
        emulated = self._emulated(fd)
        if emulated is None:
            return self._real_write(fd, data)
        offset = None
        if not self._fds[fd][1]:  # at the descriptor's position, which moves on as the real write would move it
            offset = os.lseek(fd, 0, os.SEEK_CUR)
            os.lseek(fd, offset + len(data), os.SEEK_SET)
        return self._hold(emulated, offset, bytes(data))

    def pwrite(self, fd: int, data: Any, offset: int) -> int:
        """`os.pwrite`; for an emulated descriptor the bytes wait in memory, to be written at `offset`."""
        emulated = self._emulated(fd)
        if emulated is None:
            return self._real_pwrite(fd, data, offset)
        return self._hold(emulated, offset, bytes(data))

    def ftruncate(self, fd: int, length: int) -> None:
        """`os.ftruncate`; an emulated file's pending bytes are written first, so the cut comes after them."""
        emulated = self._emulated(fd)
        if emulated is not None:
            with self._lock:
                self._push(emulated, emulated.pending_bytes)
        self._real_ftruncate(fd, length)

    def writev(self, fd: int, buffers: Sequence[Any]) -> int:
        """`os.writev`, as one `write` of the joined buffers."""
        if self._emulated(fd) is None:
            return self._real_writev(fd, buffers)
        return self.write(fd, b"".join(bytes(buffer) for buffer in buffers))

    def fsync(self, fd: Any) -> None:
        """`os.fsync`; for an emulated file the pending bytes reach the file first (after the fsync delay)."""
        self._sync(fd if isinstance(fd, int) else fd.fileno(), self._real_fsync)

    def fdatasync(self, fd: Any) -> None:
        """`os.fdatasync`, like `fsync`."""
        self._sync(fd if isinstance(fd, int) else fd.fileno(), self._real_fdatasync)

    def close(self, fd: int) -> None:
        """`os.close`; the pending bytes of a closed file stay pending (they are in the page cache, not the disk)."""
        with self._lock:
            self._forget(fd)
        self._real_close(fd)

    def settle(self) -> None:
        """A clean exit loses no power: write every pending byte (no fsync, as the page cache would)."""
        with self._lock:
            for emulated in self._files.values():
                self._push(emulated, emulated.pending_bytes)

    def pending_bytes(self) -> int:
        """Bytes written but not yet in any file (what a SIGKILL now would lose)."""
        with self._lock:
            return sum(emulated.pending_bytes for emulated in self._files.values())

    # ----- internals -----

    def _hold(self, emulated: _File, offset: int | None, chunk: bytes) -> int:
        """Keep one write pending (maybe pushing a random prefix of the pending bytes, the writeback fault)."""
        with self._lock:
            emulated.pending.append(_Write(offset, chunk))
            emulated.pending_bytes += len(chunk)
            self._pending_total += len(chunk)
            if self.writeback and self.rng.random() < self.writeback:
                self._push(emulated, self.rng.randint(0, emulated.pending_bytes))
            self._note()
        return len(chunk)

    def _emulated(self, fd: int) -> _File | None:
        entry = self._fds.get(fd)
        if entry is None:
            return None
        key = entry[0]
        try:
            info = os.fstat(fd)
        except OSError:
            return None
        if (info.st_dev, info.st_ino) != key:
            # The descriptor was closed behind our back and its number reused for another file.
            with self._lock:
                self._forget(fd)
            return None
        return self._files.get(key)

    def _forget(self, fd: int) -> None:
        """Stop emulating a descriptor; the file's state goes once nobody uses it and nothing is pending (caller
        holds the lock)."""
        entry = self._fds.pop(fd, None)
        key = entry[0] if entry is not None else None
        emulated = self._files.get(key) if key is not None else None
        if key is None or emulated is None:
            return
        emulated.users -= 1
        if emulated.users == 0 and not emulated.pending:
            self._real_close(emulated.sink)
            del self._files[key]

    def _sync(self, fd: int, real: Callable[[int], None]) -> None:
        emulated = self._emulated(fd)
        if emulated is not None:
            if self.fsync_delay:
                time.sleep(self.fsync_delay)
            with self._lock:
                self._push(emulated, emulated.pending_bytes)
        real(fd)

    def _push(self, emulated: _File, size: int) -> None:
        """Write the first `size` pending bytes to the file, in write order; a write cut inside keeps its rest pending
        (caller holds the lock)."""
        left = size
        while left and emulated.pending:
            first = emulated.pending[0]
            part = first.data[:left]
            offset = os.fstat(emulated.sink).st_size if first.offset is None else first.offset
            view = memoryview(part)
            while view:
                written = self._real_pwrite(emulated.sink, view, offset)
                view = view[written:]
                offset += written
            if len(part) == len(first.data):
                emulated.pending.pop(0)
            else:
                emulated.pending[0] = _Write(None if first.offset is None else offset, first.data[len(part) :])
            left -= len(part)
        pushed = size - left
        emulated.pending_bytes -= pushed
        self._pending_total -= pushed
        if pushed:
            self._note()

    def _note(self) -> None:
        """Write the pending total to the ledger (caller holds the lock, or nobody else runs yet)."""
        if self._ledger is not None:
            self._real_pwrite(self._ledger, f"{self._pending_total:020d}\n".encode(), 0)


def install_from_environment() -> PowerCut | None:
    """Install the emulation when `AUTOPILOT_SYNC_POWERCUT_DIR` is set (called by `powercut_site/sitecustomize.py`)."""
    directory = os.environ.get(ENV_DIRECTORY)
    if not directory:
        return None
    emulation = PowerCut(
        Path(directory),
        writeback=float(os.environ.get(ENV_WRITEBACK) or 0.0),
        fsync_delay=float(os.environ.get(ENV_FSYNC_DELAY) or 0.0),
        rng=random.Random(os.environ.get(ENV_SEED) or None),
        ledger=Path(os.environ[ENV_LEDGER]) if os.environ.get(ENV_LEDGER) else None,
    )
    emulation.install()
    return emulation
