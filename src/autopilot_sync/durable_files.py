"""One way to write a file so that a crash leaves the old file or the new one, never half of one, and never neither.

The sequence is the classic one, and every step matters: write a temporary file beside the target (same directory,
so the rename is atomic), fsync it (else the rename can reach the disk before the data), rename it over the target
(or hard-link it when an existing file must never be replaced), then fsync the directory (else the rename itself
can be lost). Snapshots, the host's metadata, signing keys, Nostr keys and the release ledger's schemas all write
through here, so none of them can skip a step.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["fsync_directory", "write_atomically"]


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """fsync a directory, so the names created, renamed or removed in it survive a crash."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(
    path: str | os.PathLike[str],
    data: bytes | list[bytes | memoryview],
    *,
    mode: int | None = None,
    replace: bool = True,
) -> Path:
    """Write `data` (bytes, or a list of parts written one after the other) to `path` durably and atomically;
    returns the path.

    `mode` is the file's exact permission bits, set before any byte is written (so a secret is never briefly
    readable by others); None creates it as `open` would (0666 less the umask). With `replace=False` an existing
    file is never overwritten: FileExistsError, and the existing file is untouched (the temporary file is linked,
    not renamed, so the check and the creation are one step). Any OSError leaves no temporary file behind.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(
        tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666 if mode is None else mode
    )
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)  # the umask may have removed bits: make the mode exact
            for part in data if isinstance(data, list) else [data]:
                view = memoryview(part)
                while view:
                    view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, target)
        else:
            os.link(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_directory(target.parent)
    return target
