"""Snapshots: every table's rows at one transaction offset, so recovery replays only the log after it.

Written to a temporary file, fsynced and renamed, so a crash leaves either the old or the new snapshot, never half
of one. A checksum guards against a damaged file; a bad snapshot is skipped in favour of an older one.
"""

from __future__ import annotations

import logging
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from autopilot_sync.durable_files import write_atomically
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime.errors import DecodeError

MAGIC = b"APSSNAP1"
_HEADER = struct.Struct("<8sI")
_BODY = at.product(
    ("offset", at.U64),
    ("schema_hash", at.STRING),
    ("tables", at.array(at.product(("name", at.STRING), ("rows", at.array(at.BYTES))))),
)
_CODEC = bsatn.codec(_BODY)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Rows (as BSATN bytes) of every table after transaction `offset`."""

    offset: int
    schema_hash: str
    tables: dict[str, list[bytes]]


def _name(offset: int) -> str:
    return f"{offset:020d}.snap"


def write_snapshot(directory: Path, snapshot: Snapshot) -> Path:
    """Write durably (tmp + fsync + rename + dir fsync); returns the final path."""
    directory.mkdir(parents=True, exist_ok=True)
    body = _CODEC.encode((snapshot.offset, snapshot.schema_hash, [(n, rows) for n, rows in snapshot.tables.items()]))
    return write_atomically(directory / _name(snapshot.offset), _HEADER.pack(MAGIC, zlib.crc32(body)) + body)


def read_snapshot(path: Path) -> Snapshot:
    """Read and verify one snapshot file (DecodeError when damaged)."""
    data = path.read_bytes()
    if len(data) < _HEADER.size:
        raise DecodeError("snapshot shorter than its header")
    magic, checksum = _HEADER.unpack_from(data, 0)
    body = data[_HEADER.size :]
    if magic != MAGIC:
        raise DecodeError("not a snapshot file (bad magic)")
    if zlib.crc32(body) != checksum:
        raise DecodeError("snapshot checksum mismatch")
    offset, schema_hash, tables = _CODEC.decode(body)
    return Snapshot(offset, schema_hash, {name: list(rows) for name, rows in tables})


def latest_snapshot(directory: Path, after: int = 0) -> Snapshot | None:
    """The newest snapshot that verifies, skipping (and reporting) damaged ones.

    Snapshots at or below `after` are never read: they hold a database incarnation a delete-data publish ended.
    """
    if not directory.exists():
        return None
    for path in sorted(directory.glob("*.snap"), reverse=True):
        if after and int(path.stem) <= after:
            break
        try:
            return read_snapshot(path)
        except (DecodeError, OSError) as exc:
            log.warning("snapshot %s unusable (%s); trying an older one", path.name, exc)
    return None


def prune_snapshots(directory: Path, keep: int = 2) -> list[int]:
    """Delete all but the newest `keep` snapshots; the offsets of those kept, newest first."""
    newest_first = sorted(directory.glob("*.snap"), reverse=True)
    for path in newest_first[keep:]:
        path.unlink(missing_ok=True)
    return [int(path.stem) for path in newest_first[:keep]]
