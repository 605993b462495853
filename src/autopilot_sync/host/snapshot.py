"""Snapshots: every table's rows at one transaction offset, so recovery replays only the log after it.

Written to a temporary file, fsynced and renamed, so a crash leaves either the old or the new snapshot, never half
of one. A checksum guards against a damaged file; a bad snapshot is skipped in favour of an older one.
"""

from __future__ import annotations

import logging
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from autopilot_sync.durable_files import write_atomically
from autopilot_sync.host.logtable import Segment
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime.errors import DecodeError

MAGIC = b"APSSNAP2"
#: Snapshots written before log tables kept their partitions as buffers: no `logs` section; still read.
MAGIC_V1 = b"APSSNAP1"
_HEADER = struct.Struct("<8sI")
_TABLES = ("tables", at.array(at.product(("name", at.STRING), ("rows", at.array(at.BYTES)))))
_SEGMENT = at.product(
    ("prefix", at.BYTES), ("seqs", at.BYTES), ("ends", at.BYTES), ("buf", at.BYTES), ("hashes", at.array(at.BYTES))
)
_LOGS = ("logs", at.array(at.product(("name", at.STRING), ("segments", at.array(_SEGMENT)))))
_CODEC = bsatn.codec(at.product(("offset", at.U64), ("schema_hash", at.STRING), _TABLES, _LOGS))
_CODEC_V1 = bsatn.codec(at.product(("offset", at.U64), ("schema_hash", at.STRING), _TABLES))

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Rows (as BSATN bytes) of every table after transaction `offset`; a log table (`host/logtable.py`) as its
    partitions' buffers in `logs` instead (no row object is made to write or to load them)."""

    offset: int
    schema_hash: str
    tables: dict[str, list[bytes]]
    logs: dict[str, list[Segment]] = field(default_factory=dict)


def _name(offset: int) -> str:
    return f"{offset:020d}.snap"


def write_snapshot(directory: Path, snapshot: Snapshot) -> Path:
    """Write durably (tmp + fsync + rename + dir fsync); returns the final path."""
    directory.mkdir(parents=True, exist_ok=True)
    body = _CODEC.encode(
        (
            snapshot.offset,
            snapshot.schema_hash,
            [(n, rows) for n, rows in snapshot.tables.items()],
            [(n, segments) for n, segments in snapshot.logs.items()],
        )
    )
    return write_atomically(directory / _name(snapshot.offset), _HEADER.pack(MAGIC, zlib.crc32(body)) + body)


def read_snapshot(path: Path) -> Snapshot:
    """Read and verify one snapshot file (DecodeError when damaged)."""
    data = path.read_bytes()
    if len(data) < _HEADER.size:
        raise DecodeError("snapshot shorter than its header")
    magic, checksum = _HEADER.unpack_from(data, 0)
    body = memoryview(data)[_HEADER.size :]  # a view: a log table's snapshot is hundreds of MB, copied once less
    if magic not in (MAGIC, MAGIC_V1):
        raise DecodeError("not a snapshot file (bad magic)")
    if zlib.crc32(body) != checksum:
        raise DecodeError("snapshot checksum mismatch")
    if magic == MAGIC_V1:
        offset, schema_hash, tables = _CODEC_V1.decode(body)
        return Snapshot(offset, schema_hash, {name: list(rows) for name, rows in tables})
    offset, schema_hash, tables, logs = _CODEC.decode(body)
    return Snapshot(
        offset,
        schema_hash,
        {name: list(rows) for name, rows in tables},
        {name: [(p, s, e, b, list(h)) for p, s, e, b, h in segments] for name, segments in logs},
    )


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
