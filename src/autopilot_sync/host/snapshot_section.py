"""A log partition's buffer inside a mapped snapshot file, checked against its checksum before its first use.

A snapshot of a million events is ~400 MB, nearly all of it log-table buffers (`host/logtable.py`). Reading the file
and checking one checksum over all of it cost ~1.3 s of CPU at start; mapping it costs nothing until a page is
touched. So each partition's buffer is its own section with its own CRC-32 (format `APSSNAP3`, `host/snapshot.py`),
and a `Section` holds the mapped bytes unverified: `verified()` checks them once — at the partition's first read or
write, or earlier from the background check `verify_in_background` starts after recovery — and a mismatch raises
`CorruptSnapshotError` every time the section is asked for, so bytes that fail their checksum are never used, served or
written into a later snapshot.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import zlib
from collections.abc import Iterable
from pathlib import Path

from autopilot_sync.spacetime.errors import DecodeError

log = logging.getLogger(__name__)


class CorruptSnapshotError(DecodeError):
    """A snapshot section's bytes do not match their checksum: none of them was used.

    Found while reading a snapshot, the snapshot is skipped for an older one. Found after start (a log partition's
    buffer is verified at its first use), the operation needing it is refused with this error; the next start falls
    back to the previous snapshot and the commit log after it, which the corrupt snapshot never let go of.
    """


class Section:
    """Mapped bytes and the CRC-32 they must have; `verified()` answers them only once they matched."""

    __slots__ = ("_ok", "crc", "path", "view", "where")

    def __init__(self, view: memoryview, crc: int, path: Path, where: str) -> None:
        self.view = view
        self.crc = crc
        #: The snapshot file: set aside (renamed `*.snap.corrupt`) when a section fails, so no start reads it again.
        self.path = path
        #: Which section, for the error (the partition's key).
        self.where = where
        self._ok: bool | None = None

    def check(self) -> bool:
        """Compute the checksum once (zlib releases the GIL over large buffers: safe from a background thread)."""
        ok = self._ok
        if ok is None:
            ok = zlib.crc32(self.view) == self.crc
            if not ok:
                log.error(
                    "snapshot %s: section %s fails its checksum; set aside, its rows are refused until a restart "
                    "falls back to the previous snapshot",
                    self.path.name,
                    self.where,
                )
                with contextlib.suppress(OSError):  # another section of the same file may have moved it already
                    self.path.rename(self.path.with_name(self.path.name + ".corrupt"))
            self._ok = ok  # only now: whoever sees the verdict also sees the file set aside
        return ok

    def verified(self) -> memoryview:
        """The bytes, once they matched their checksum; `CorruptSnapshotError` otherwise."""
        if self._ok or self.check():
            return self.view
        raise CorruptSnapshotError(f"snapshot {self.path.name} section {self.where} checksum mismatch")


class Chunks:
    """A partition's buffer spread over sections of several snapshot files: a full snapshot's and the rows each
    incremental snapshot after it appended (`host/snapshot.py`, format `APSSNAP4`). `verified()` checks every section
    and joins them into one `bytearray` (the partition's first use pays that copy, not the start)."""

    __slots__ = ("sections",)

    def __init__(self, sections: list[Section]) -> None:
        self.sections = sections

    def __len__(self) -> int:
        return sum(len(section.view) for section in self.sections)

    def verified(self) -> bytearray:
        """The joined bytes once every section matched its checksum; `CorruptSnapshotError` otherwise."""
        views = [section.verified() for section in self.sections]
        out = bytearray(sum(len(view) for view in views))
        at = 0
        for view in views:
            out[at : at + len(view)] = view
            at += len(view)
        return out


def verify_in_background(sections: Iterable[Section]) -> threading.Thread | None:
    """Check every section on a daemon thread (the event loop checks any it needs first itself)."""
    pending = list(sections)
    if not pending:
        return None
    thread = threading.Thread(target=_check_all, args=(pending,), name="snapshot-verify", daemon=True)
    thread.start()
    return thread


def _check_all(sections: list[Section]) -> None:
    for section in sections:
        section.check()
