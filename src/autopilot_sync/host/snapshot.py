"""Snapshots: every table's rows at one transaction offset, so recovery replays only the log after it.

Written to a temporary file, fsynced and renamed, so a crash leaves either the old or the new snapshot, never half
of one. Checksums guard against a damaged file; a bad snapshot is skipped in favour of an older one.

Format `APSSNAP4`: `magic | u32 CRC-32 | u64 head length | u64 base offset | u32 base id | head | sections`. The head
(BSATN) holds the offset, the schema hash, the generic tables' rows, and for each log-table partition where its
section lies, its dead head rows, the rows it takes from the base, and two CRC-32s: one over its seqs, ends and hash
arrays, one over its buffer. The CRC-32 covers the base fields and the head; it is also the file's id. The file is
mapped, not read: the head and every partition's arrays are checked while the snapshot is read (a mismatch skips the
snapshot), each buffer — nearly all of the file — at its partition's first use or by a background check after start
(`host/snapshot_section.py`), so a start on a million events neither reads nor checksums 400 MB before it is ready.

Incremental snapshots: a log table only grows by appends between trims, so a snapshot may name a base (the previous
snapshot, by offset and id) and hold, for a partition only appended to since, just the rows after the base's
(`base_rows`); a partition it does not list is gone. Reading one follows its chain of bases down to a whole snapshot
(base offset 0) and joins each partition's pieces: arrays at once (16-20 bytes a row), buffers as `Chunks` joined at
the partition's first use. A chain whose base is missing, is another file than the one named, or fails a checksum is
refused like a damaged snapshot (the start falls back to an older one and the log after it). `APSSNAP3` (no bases),
`APSSNAP2` (one CRC over a BSATN body holding the buffers) and `APSSNAP1` (no log tables) are still read; a host
older than `APSSNAP4` cannot read what this one writes.
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autopilot_sync.durable_files import write_atomically
from autopilot_sync.host.logtable import Bytes, Segment
from autopilot_sync.host.snapshot_section import Chunks, CorruptSnapshotError, Section
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime.errors import DecodeError

MAGIC = b"APSSNAP4"
#: Snapshots without bases (every snapshot whole): still read.
MAGIC_V3 = b"APSSNAP3"
#: Snapshots whose log buffers sit in the one checksummed BSATN body: read whole, still read.
MAGIC_V2 = b"APSSNAP2"
#: Snapshots written before log tables kept their partitions as buffers: no `logs` section; still read.
MAGIC_V1 = b"APSSNAP1"
_HEADER = struct.Struct("<8sI")
_HEADER_V3 = struct.Struct("<8sIQ")
_HEADER_V4 = struct.Struct("<8sIQQI")
_BASE = struct.Struct("<QI")
#: Longest chain of incremental snapshots read (the scheduler starts a whole one long before: a guard, not a knob).
MAX_CHAIN = 1024
_TABLES = ("tables", at.array(at.product(("name", at.STRING), ("rows", at.array(at.BYTES)))))
_SEGMENT = at.product(
    ("prefix", at.BYTES), ("seqs", at.BYTES), ("ends", at.BYTES), ("buf", at.BYTES), ("hashes", at.array(at.BYTES))
)
_LOGS = ("logs", at.array(at.product(("name", at.STRING), ("segments", at.array(_SEGMENT)))))


class _CodecOnFirstUse:
    """A snapshot format's BSATN codec, compiled the first time a snapshot is written or read, not at import.

    Why: the four formats' codecs were compiled at every host start (~10 ms of an idle start's CPU), and a start on
    an empty store (or on a log without a snapshot) neither reads nor writes one before `ready` (docs/performance.md
    "Round 7 — startup4").
    """

    __slots__ = ("_codec", "_type")

    def __init__(self, ty: at.AlgebraicType) -> None:
        self._type = ty
        self._codec: bsatn.Codec | None = None

    @property
    def codec(self) -> bsatn.Codec:
        """The compiled codec (compiled on first use; `bsatn.codec` caches it by type)."""
        if self._codec is None:
            self._codec = bsatn.codec(self._type)
        return self._codec

    def encode(self, value: Any) -> bytes:
        """`bsatn.Codec.encode`."""
        return self.codec.encode(value)

    def decode(self, data: bsatn.Buffer) -> Any:
        """`bsatn.Codec.decode`."""
        return self.codec.decode(data)


_CODEC = _CodecOnFirstUse(at.product(("offset", at.U64), ("schema_hash", at.STRING), _TABLES, _LOGS))
_CODEC_V1 = _CodecOnFirstUse(at.product(("offset", at.U64), ("schema_hash", at.STRING), _TABLES))
#: Where a partition's section lies (from the end of the head) and its parts' lengths and checksums.
_SECTION_FIELDS: tuple[tuple[str, at.AlgebraicType], ...] = (
    ("prefix", at.BYTES),
    ("at", at.U64),
    ("seqs", at.U64),
    ("ends", at.U64),
    ("hashes", at.array(at.U64)),
    ("buf", at.U64),
    ("arrays_crc", at.U32),
    ("buf_crc", at.U32),
)
_SECTION = at.product(*_SECTION_FIELDS)
_LOGS_V3 = ("logs", at.array(at.product(("name", at.STRING), ("sections", at.array(_SECTION)))))
_CODEC_V3 = _CodecOnFirstUse(at.product(("offset", at.U64), ("schema_hash", at.STRING), _TABLES, _LOGS_V3))
_SECTION_V4 = at.product(*_SECTION_FIELDS, ("head", at.U64), ("base_rows", at.U64))
_LOGS_V4 = ("logs", at.array(at.product(("name", at.STRING), ("sections", at.array(_SECTION_V4)))))
_CODEC_V4 = _CodecOnFirstUse(at.product(("offset", at.U64), ("schema_hash", at.STRING), _TABLES, _LOGS_V4))

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Rows (as BSATN bytes) of every table after transaction `offset`; a log table (`host/logtable.py`) as its
    partitions' buffers in `logs` instead (no row object is made to write or to load them)."""

    offset: int
    schema_hash: str
    tables: dict[str, list[bytes]]
    logs: dict[str, list[Segment]] = field(default_factory=dict)
    #: To write incrementally: the offset and id of the snapshot its partitions with `base_rows` extend (0: whole).
    #: Read, always 0: every partition is whole (the chain joined), so writing it back writes a whole snapshot.
    base: int = 0
    base_id: int = 0
    #: Read: the newest file's id (what an incremental snapshot taken on top of it names) and its chain's length.
    snapshot_id: int = 0
    chain: int = 1


def _name(offset: int) -> str:
    return f"{offset:020d}.snap"


def snapshot_path(directory: Path, offset: int) -> Path:
    """Where the snapshot at `offset` is (or would be) written."""
    return directory / _name(offset)


def write_snapshot(directory: Path, snapshot: Snapshot) -> Path:
    """Write durably (tmp + fsync + rename + dir fsync); returns the final path."""
    directory.mkdir(parents=True, exist_ok=True)
    parts: list[Bytes] = []
    logs = []
    at_ = 0
    for name, segments in snapshot.logs.items():
        sections = []
        for segment in segments:
            stored = segment.buf
            # A buffer spread over a chain's files is written piece by piece (each checked), not joined first.
            pieces: list[Bytes] = (
                [section.verified() for section in stored.sections]
                if isinstance(stored, Chunks)
                else [stored.verified() if isinstance(stored, Section) else stored]
            )
            buf_crc = 0
            if isinstance(stored, Section):
                buf_crc = stored.crc  # just checked
            else:
                for piece in pieces:
                    buf_crc = zlib.crc32(piece, buf_crc)
            buf_length = sum(len(piece) for piece in pieces)
            arrays = [segment.seqs, segment.ends, *segment.hashes]
            arrays_crc = 0
            for array in arrays:
                arrays_crc = zlib.crc32(array, arrays_crc)
            lengths = [len(h) for h in segment.hashes]
            sections.append(
                (
                    segment.prefix,
                    at_,
                    len(segment.seqs),
                    len(segment.ends),
                    lengths,
                    buf_length,
                    arrays_crc,
                    buf_crc,
                    segment.head,
                    segment.base_rows,
                )
            )
            parts += [*arrays, *pieces]
            at_ += sum(len(array) for array in arrays) + buf_length
        logs.append((name, sections))
    head = _CODEC_V4.encode(
        (snapshot.offset, snapshot.schema_hash, [(n, rows) for n, rows in snapshot.tables.items()], logs)
    )
    base = _BASE.pack(snapshot.base, snapshot.base_id)
    header = _HEADER_V4.pack(MAGIC, zlib.crc32(head, zlib.crc32(base)), len(head), snapshot.base, snapshot.base_id)
    return write_atomically(directory / _name(snapshot.offset), [header, head, *parts])


def write_consolidated(directory: Path, snapshot: Snapshot) -> Path:
    """Write an incremental snapshot, then read it back with its chain and write it whole under the same name (the
    rename replaces it atomically: a crash leaves one or the other, with the same rows). Runs in the writer thread:
    what the event loop captured is only what was appended, and the whole file is made from the files already on
    disk (mapped; each buffer checked against its checksum as it is written, never joined in memory)."""
    path = write_snapshot(directory, snapshot)
    if snapshot.base:
        path = write_snapshot(directory, read_snapshot(path))
    return path


@dataclass(frozen=True, slots=True)
class SnapshotHeader:
    """What a snapshot file's fixed header says: its id and the base it extends (0: none, it is whole)."""

    snapshot_id: int
    base: int


def read_header(path: Path) -> SnapshotHeader:
    """The fixed header only (pruning tells whole snapshots from incremental ones; the scheduler names a base by it).
    Nothing is verified but the magic: reading the snapshot checks the rest."""
    with path.open("rb") as file:
        data = file.read(_HEADER_V4.size)
    if data[: len(MAGIC)] == MAGIC and len(data) == _HEADER_V4.size:
        _magic, checksum, _length, base, _base_id = _HEADER_V4.unpack(data)
        return SnapshotHeader(checksum, base)
    if len(data) >= _HEADER.size and data[: len(MAGIC)] in (MAGIC_V3, MAGIC_V2, MAGIC_V1):
        return SnapshotHeader(_HEADER.unpack_from(data, 0)[1], 0)
    raise DecodeError("not a snapshot file (bad magic)")


def read_snapshot(path: Path) -> Snapshot:
    """Read and verify one snapshot file, and the chain of bases it extends (DecodeError when damaged; a log
    partition's buffer is verified at its first use, see the module docstring)."""
    with path.open("rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size < _HEADER.size:
            raise DecodeError("snapshot shorter than its header")
        magic = file.read(len(MAGIC))
        if magic == MAGIC:
            return _read_chain(path)
        if magic == MAGIC_V3:
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
        {name: [Segment(p, s, e, b, list(h)) for p, s, e, b, h in segments] for name, segments in logs},
    )


def _sections(
    path: Path, name: str, view: memoryview, base: int, sections: list[tuple[Any, ...]]
) -> list[tuple[tuple[Any, ...], list[Bytes], Section]]:
    """Each partition's section of a mapped `APSSNAP3`/`APSSNAP4` file: (its head fields, its arrays checked now,
    its buffer a `Section` checked at first use)."""
    out = []
    for fields in sections:
        prefix, start, seqs, ends, hashes, buf, arrays_crc, buf_crc = fields[:8]
        cut = base + start
        arrays: list[Bytes] = []
        for length_ in [seqs, ends, *hashes]:
            arrays.append(view[cut : cut + length_])
            cut += length_
        if cut + buf > len(view):
            raise CorruptSnapshotError(f"snapshot section of {name} past the end of the file")
        crc = 0
        for array in arrays:
            crc = zlib.crc32(array, crc)
        if crc != arrays_crc:
            raise CorruptSnapshotError(f"snapshot section of {name} ({bytes(prefix)!r}) checksum mismatch")
        section = Section(view[cut : cut + buf], buf_crc, path, f"{name}/{bytes(prefix[4:]).decode(errors='replace')}")
        out.append((fields, arrays, section))
    return out


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
        out[name] = [
            Segment(bytes(fields[0]), arrays[0], arrays[1], section, arrays[2:])
            for fields, arrays, section in _sections(path, name, view, base, sections)
        ]
    return Snapshot(offset, schema_hash, {name: list(rows) for name, rows in tables}, out)


@dataclass(slots=True)
class _File:
    """One `APSSNAP4` file of a chain, checked but not yet joined with its bases."""

    offset: int
    schema_hash: str
    tables: dict[str, list[bytes]]
    logs: dict[str, list[Segment]]
    snapshot_id: int
    base: int
    base_id: int


def _read_v4(path: Path) -> _File:
    with path.open("rb") as file:
        if os.fstat(file.fileno()).st_size < _HEADER_V4.size:
            raise DecodeError("snapshot shorter than its header")
        view = memoryview(mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ))
    magic, checksum, length, base_offset, base_id = _HEADER_V4.unpack_from(view, 0)
    if magic != MAGIC:
        raise DecodeError("not an incremental-format snapshot (bad magic)")
    base = _HEADER_V4.size + length
    if base > len(view):
        raise CorruptSnapshotError("snapshot shorter than its head")
    head = view[_HEADER_V4.size : base]
    if zlib.crc32(head, zlib.crc32(_BASE.pack(base_offset, base_id))) != checksum:
        raise CorruptSnapshotError("snapshot head checksum mismatch")
    offset, schema_hash, tables, logs = _CODEC_V4.decode(head)
    out: dict[str, list[Segment]] = {}
    for name, sections in logs:
        out[name] = [
            Segment(bytes(fields[0]), arrays[0], arrays[1], section, arrays[2:], fields[8], fields[9])
            for fields, arrays, section in _sections(path, name, view, base, sections)
        ]
    return _File(offset, schema_hash, {n: list(rows) for n, rows in tables}, out, checksum, base_offset, base_id)


class _Pieces:
    """One partition's pieces along a chain, joined once at the end (not once per file)."""

    __slots__ = ("ends", "hashes", "head", "prefix", "rows", "sections", "seqs")

    def __init__(self, segment: Segment) -> None:
        self.prefix = segment.prefix
        self.seqs: list[Bytes] = []
        self.ends: list[Bytes] = []
        self.hashes: list[list[Bytes]] = [[] for _ in segment.hashes]
        self.sections: list[Section] = []
        self.rows = 0
        self.head = 0
        self.add(segment)

    def add(self, segment: Segment) -> None:
        if len(segment.hashes) != len(self.hashes) or not isinstance(segment.buf, Section):
            raise DecodeError("snapshot partition does not match its base's")
        self.seqs.append(segment.seqs)
        self.ends.append(segment.ends)
        for column, hashes in enumerate(segment.hashes):
            self.hashes[column].append(hashes)
        if len(segment.buf.view):
            self.sections.append(segment.buf)
        self.rows += len(segment.seqs) // 8
        self.head = segment.head

    def segment(self) -> Segment:
        sections = self.sections
        buf: Bytes | Section | Chunks = (
            sections[0] if len(sections) == 1 else Chunks(sections) if sections else memoryview(b"")
        )
        return Segment(self.prefix, _join(self.seqs), _join(self.ends), buf, [_join(h) for h in self.hashes], self.head)


def _join(pieces: list[Bytes]) -> Bytes:
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def _read_chain(path: Path) -> Snapshot:
    """An `APSSNAP4` file and the bases it extends, joined into whole partitions (module docstring)."""
    files = [_read_v4(path)]
    while files[-1].base:
        newer = files[-1]
        if newer.base >= newer.offset or len(files) >= MAX_CHAIN:
            raise DecodeError(f"snapshot at offset {newer.offset} names an impossible base {newer.base}")
        base = _read_v4(path.with_name(_name(newer.base)))  # missing: FileNotFoundError, an unusable snapshot
        if (base.offset, base.snapshot_id) != (newer.base, newer.base_id):
            raise CorruptSnapshotError(f"snapshot at offset {newer.offset}: its base is not the file it names")
        if base.schema_hash != newer.schema_hash:
            raise DecodeError(f"snapshot at offset {newer.offset} extends one written under another schema")
        files.append(base)
    state: dict[str, dict[bytes, _Pieces]] = {}
    for file in reversed(files):
        joined: dict[str, dict[bytes, _Pieces]] = {}
        for name, segments in file.logs.items():
            before = state.get(name, {})
            table = joined[name] = {}
            for segment in segments:
                if segment.base_rows:
                    pieces = before.get(segment.prefix)
                    if pieces is None or pieces.rows != segment.base_rows:
                        raise CorruptSnapshotError(
                            f"snapshot at offset {file.offset}: a partition of {name} extends rows its base lacks"
                        )
                    pieces.add(segment)
                else:
                    pieces = _Pieces(segment)
                table[segment.prefix] = pieces
        state = joined
    newest = files[0]
    return Snapshot(
        newest.offset,
        newest.schema_hash,
        newest.tables,
        {name: [pieces.segment() for pieces in table.values()] for name, table in state.items()},
        snapshot_id=newest.snapshot_id,
        chain=len(files),
    )


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
    """Keep the newest `keep` whole snapshots and everything newer (the incremental ones need their chain); delete
    the rest. The offsets of the whole snapshots kept, newest first: the log after the oldest of them is what a
    start needs even when every newer file is damaged."""
    newest_first = sorted(directory.glob("*.snap"), reverse=True)
    whole: list[int] = []
    for i, path in enumerate(newest_first):
        try:
            is_whole = read_header(path).base == 0
        except (DecodeError, OSError):
            is_whole = False  # unreadable: kept until older whole ones are found, then deleted with them
        if is_whole:
            whole.append(int(path.stem))
            if len(whole) == keep:
                for older in newest_first[i + 1 :]:
                    older.unlink(missing_ok=True)
                break
    return whole
