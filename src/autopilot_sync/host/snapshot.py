"""Snapshots: every table's rows at one transaction offset, so recovery replays only the log after it.

Written to a temporary file, fsynced and renamed, so a crash leaves either the old or the new snapshot, never half
of one. Checksums guard against a damaged file; a bad snapshot is skipped in favour of an older one.

Format `APSSNAP3`: `magic | u32 CRC-32 of the head | u64 head length | head | sections`. The head (BSATN) holds the
offset, the schema hash, the generic tables' rows, and for each log-table partition where its section lies and two
CRC-32s: one over its seqs, ends and hash arrays, one over its buffer. The file is mapped, not read: the head and
every partition's arrays are checked while the snapshot is read (a mismatch skips the snapshot, as before), each
buffer — nearly all of the file — at its partition's first use or by a background check after start
(`host/snapshot_section.py`), so a start on a million events neither reads nor checksums 400 MB before it is ready.
`APSSNAP2` (one CRC over a BSATN body holding the buffers) and `APSSNAP1` (no log tables) are still read.
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from autopilot_sync.durable_files import write_atomically
from autopilot_sync.host.logtable import Bytes, Segment
from autopilot_sync.host.snapshot_section import CorruptSnapshotError, Section
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime.errors import DecodeError

MAGIC = b"APSSNAP3"
#: Snapshots whose log buffers sit in the one checksummed BSATN body: read whole, still read.
MAGIC_V2 = b"APSSNAP2"
#: Snapshots written before log tables kept their partitions as buffers: no `logs` section; still read.
MAGIC_V1 = b"APSSNAP1"
_HEADER = struct.Struct("<8sI")
_HEADER_V3 = struct.Struct("<8sIQ")
_TABLES = ("tables", at.array(at.product(("name", at.STRING), ("rows", at.array(at.BYTES)))))
_SEGMENT = at.product(
    ("prefix", at.BYTES), ("seqs", at.BYTES), ("ends", at.BYTES), ("buf", at.BYTES), ("hashes", at.array(at.BYTES))
)
_LOGS = ("logs", at.array(at.product(("name", at.STRING), ("segments", at.array(_SEGMENT)))))
_CODEC = bsatn.codec(at.product(("offset", at.U64), ("schema_hash", at.STRING), _TABLES, _LOGS))
_CODEC_V1 = bsatn.codec(at.product(("offset", at.U64), ("schema_hash", at.STRING), _TABLES))
#: Where a partition's section lies (from the end of the head) and its parts' lengths and checksums.
_SECTION = at.product(
    ("prefix", at.BYTES),
    ("at", at.U64),
    ("seqs", at.U64),
    ("ends", at.U64),
    ("hashes", at.array(at.U64)),
    ("buf", at.U64),
    ("arrays_crc", at.U32),
    ("buf_crc", at.U32),
)
_LOGS_V3 = ("logs", at.array(at.product(("name", at.STRING), ("sections", at.array(_SECTION)))))
_CODEC_V3 = bsatn.codec(at.product(("offset", at.U64), ("schema_hash", at.STRING), _TABLES, _LOGS_V3))

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
    parts: list[Bytes] = []
    logs = []
    at_ = 0
    for name, segments in snapshot.logs.items():
        sections = []
        for prefix, seqs, ends, stored, hashes in segments:
            buf = stored.verified() if isinstance(stored, Section) else stored
            arrays = [seqs, ends, *hashes]
            arrays_crc = 0
            for array in arrays:
                arrays_crc = zlib.crc32(array, arrays_crc)
            lengths = [len(h) for h in hashes]
            sections.append((prefix, at_, len(seqs), len(ends), lengths, len(buf), arrays_crc, zlib.crc32(buf)))
            parts += [*arrays, buf]
            at_ += sum(len(array) for array in arrays) + len(buf)
        logs.append((name, sections))
    head = _CODEC_V3.encode(
        (snapshot.offset, snapshot.schema_hash, [(n, rows) for n, rows in snapshot.tables.items()], logs)
    )
    header = _HEADER_V3.pack(MAGIC, zlib.crc32(head), len(head))
    return write_atomically(directory / _name(snapshot.offset), [header, head, *parts])


def read_snapshot(path: Path) -> Snapshot:
    """Read and verify one snapshot file (DecodeError when damaged; a log partition's buffer is verified at its
    first use, see the module docstring)."""
    with path.open("rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size < _HEADER.size:
            raise DecodeError("snapshot shorter than its header")
        if file.read(len(MAGIC)) == MAGIC:
            return _read_mapped(path, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ))
    data = path.read_bytes()
    magic, checksum = _HEADER.unpack_from(data, 0)
    body = memoryview(data)[_HEADER.size :]  # a view: a log table's snapshot is hundreds of MB, copied once less
    if magic not in (MAGIC_V2, MAGIC_V1):
        raise DecodeError("not a snapshot file (bad magic)")
    if zlib.crc32(body) != checksum:
        raise CorruptSnapshotError("snapshot checksum mismatch")
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


def _read_mapped(path: Path, mapped: mmap.mmap) -> Snapshot:
    """An `APSSNAP3` file: head and arrays checked now, each buffer a `Section` of the mapping checked at first use.

    Nothing keeps `mapped` but the views into it: once every partition was written to (copied) or dropped, the
    mapping goes with the last view."""
    view = memoryview(mapped)
    if len(view) < _HEADER_V3.size:
        raise DecodeError("snapshot shorter than its header")
    _magic, checksum, length = _HEADER_V3.unpack_from(view, 0)
    base = _HEADER_V3.size + length
    if base > len(view):
        raise CorruptSnapshotError("snapshot shorter than its head")
    head = view[_HEADER_V3.size : base]
    if zlib.crc32(head) != checksum:
        raise CorruptSnapshotError("snapshot head checksum mismatch")
    offset, schema_hash, tables, logs = _CODEC_V3.decode(head)
    out: dict[str, list[Segment]] = {}
    for name, sections in logs:
        segments = out[name] = []
        for prefix, start, seqs, ends, hashes, buf, arrays_crc, buf_crc in sections:
            cut = base + start
            lengths = [seqs, ends, *hashes]
            arrays: list[Bytes] = []
            for length_ in lengths:
                arrays.append(view[cut : cut + length_])
                cut += length_
            if cut + buf > len(view):
                raise CorruptSnapshotError(f"snapshot section of {name} past the end of the file")
            crc = 0
            for array in arrays:
                crc = zlib.crc32(array, crc)
            if crc != arrays_crc:
                raise CorruptSnapshotError(f"snapshot section of {name} ({bytes(prefix)!r}) checksum mismatch")
            section = Section(
                view[cut : cut + buf], buf_crc, path, f"{name}/{bytes(prefix[4:]).decode(errors='replace')}"
            )
            segments.append((bytes(prefix), arrays[0], arrays[1], section, arrays[2:]))
    return Snapshot(offset, schema_hash, {name: list(rows) for name, rows in tables}, out)


def latest_snapshot(directory: Path, after: int = 0, below: int | None = None) -> Snapshot | None:
    """The newest snapshot that verifies, skipping (and reporting) damaged ones.

    Snapshots at or below `after` are never read: they hold a database incarnation a delete-data publish ended.
    `below`: only snapshots older than this offset (a newer one failed a section's checksum while it was loaded).
    """
    if not directory.exists():
        return None
    for path in sorted(directory.glob("*.snap"), reverse=True):
        if after and int(path.stem) <= after:
            break
        if below is not None and int(path.stem) >= below:
            continue
        try:
            return read_snapshot(path)
        except (DecodeError, OSError, ValueError) as exc:
            log.warning("snapshot %s unusable (%s); trying an older one", path.name, exc)
    return None


def prune_snapshots(directory: Path, keep: int = 2) -> list[int]:
    """Delete all but the newest `keep` snapshots; the offsets of those kept, newest first."""
    newest_first = sorted(directory.glob("*.snap"), reverse=True)
    for path in newest_first[keep:]:
        path.unlink(missing_ok=True)
    return [int(path.stem) for path in newest_first[:keep]]
