"""One process per state directory: an exclusive `flock` on `<directory>/.lock`, a file that names its holder.

Two hosts on one data directory (or two runtimes on one outbox, two desktops on one config directory) would each
believe they own the files and corrupt them, and both used to print `ready`. Every service that owns a directory
takes this lock before it touches anything in it; a second process exits 2 with one line naming the holder's PID.
The kernel drops a `flock` when its holder exits, however it exits (SIGKILL included), so a lock file left behind
never blocks a restart; the PID written into it is only for the message.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

LOCK_FILE_NAME = ".lock"
#: Exit status of a service refused because another process holds its directory (the usage-error convention, like
#: a configuration it refuses).
EXIT_LOCKED = 2
#: How long to wait for a holder that has the lock but has not written its PID yet.
_PID_WAIT_SECONDS = 0.5


class DirectoryLockedError(RuntimeError):
    """Another process holds the directory's lock; the message names its PID (when it wrote one)."""

    def __init__(self, directory: Path, holder: str | None, role: str) -> None:
        self.directory = directory
        self.holder = holder
        who = holder or "another process (its PID is not recorded yet)"
        super().__init__(
            f"{role} {directory} is in use by {who} (lock {directory / LOCK_FILE_NAME}); "
            "stop that process or use another directory"
        )


@dataclass
class DirectoryLock:
    """A held lock; `release` (or process exit) frees it."""

    directory: Path
    _fd: int | None = field(default=None, repr=False)

    def release(self) -> None:
        """Unlock and close (the lock file stays: deleting it would race a process about to lock it)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def lock_directory(directory: Path, role: str, service: str, mode: int = 0o777) -> DirectoryLock:
    """Create `directory` if needed (with `mode`) and lock it for this process; DirectoryLockedError when held.

    `role` names the directory in the error ("host data directory"); `service` is written next to the PID so an
    operator reading the lock file sees who holds it. `mode` matters when the lock is the first to create the
    directory (the desktop's config directory holds its key: 0700).
    """
    directory.mkdir(parents=True, exist_ok=True, mode=mode)
    path = directory / LOCK_FILE_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise DirectoryLockedError(directory, holder, role) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {service}\n".encode(), 0)
    return DirectoryLock(directory, fd)


def lock_or_exit(directory: Path, role: str, service: str, mode: int = 0o777) -> DirectoryLock:
    """`lock_directory` for a service's start: on refusal print the one-line reason to stderr and exit 2."""
    try:
        return lock_directory(directory, role, service, mode)
    except DirectoryLockedError as exc:
        print(f"autopilot-sync {service}: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_LOCKED) from None


def _holder(fd: int) -> str | None:
    """`<pid> (<service>)` from the lock file, waiting briefly for a holder that has not written it yet."""
    deadline = time.monotonic() + _PID_WAIT_SECONDS
    while True:
        text = os.pread(fd, 200, 0).decode(errors="replace").split()
        if text and text[0].isdigit():
            return f"PID {text[0]}" + (f" ({text[1]})" if len(text) > 1 else "")
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)
