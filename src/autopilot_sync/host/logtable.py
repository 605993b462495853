"""The log table kind: rows of an append-shaped table kept per partition in one bytes buffer, not one object per row.

A table is log-shaped when its only unique key is its first two columns, a string partition key and a u64 sequence
(events keyed by `(stream, seq)`), every other index leads with the partition column, and it has no primary key,
auto-increment, schedule or event flag (`is_log_shaped`). Such a table grows by appending a row with the next
sequence of a partition and shrinks by trimming a partition's oldest rows; the generic `RowMap` plus sorted indexes
spend ~350 bytes of Python keys and slots per row on it. Here a partition holds:

- `buf`: every live row's bytes after the partition key and the sequence, back to back (the key is the same for the
  whole partition and the sequence sits in `seqs`, so a row's stored bytes are rebuilt exactly as
  `prefix + seq + tail`; BSATN is canonical);
- `seqs` and `ends`: the sequence and end offset of each row, in sequence order (`array('Q')`, 8 bytes each);
- `hashes`: per other index, the hash of each row's key after the partition column (8 bytes each), with a `set` of
  them answering "no such key" (the append path's idempotency check) without a scan.

Lookups by `(partition, seq)` bisect `seqs`; `seq > n` is a slice. Rows trimmed from the head only advance `head` (the
space is reclaimed by compaction once half the partition is dead, so rolling back a trim is re-opening the slot);
an insert or delete in the middle of a partition rebuilds its arrays (correct, O(partition), and rare for a log).
Every read answers what the generic store would, rows in each index's key order; rows with equal keys of a
non-unique index come in sequence order (the generic store's order for them is a set's, i.e. unspecified).
"""

from __future__ import annotations

import struct
import zlib
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from autopilot_sync.bindings.tables import TableDef
from autopilot_sync.host.capture_arena import CaptureArena
from autopilot_sync.host.change_stamp import next_stamp
from autopilot_sync.host.row_cache import DecodedRows
from autopilot_sync.host.snapshot_section import Chunks, Section
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime.rowlist import MAX_FIXED_ROW_SIZE, BsatnRowList, FixedSize, RowOffsets

_pack_run: (
    Callable[[bytearray | memoryview, bytes, array[int], array[int], array[int]], tuple[bytes, int | tuple[int, ...]]]
    | None
)
try:
    from autopilot_sync.spacetime._rowlist import pack_run as _pack_run
except ImportError:  # not compiled on this machine: `RowRun` packs `Partition.rows_between`
    _pack_run = None

Key = tuple[Any, ...]
Bytes = bytes | memoryview


class Segment(NamedTuple):
    """One partition in a snapshot, its arrays as their machine bytes (little-endian on every platform the host runs
    on). Read from a mapped snapshot, the buffer is a `Section` of the mapping (or `Chunks` of several, from an
    incremental snapshot's chain), checked against its checksum at first use."""

    #: The partition key's BSATN bytes (u32 length + UTF-8).
    prefix: bytes
    seqs: Bytes
    ends: Bytes
    buf: Bytes | Section | Chunks
    #: One hash array per other index.
    hashes: list[Bytes]
    #: Dead rows at the front (trimmed, not compacted yet): the arrays and the buffer still hold them.
    head: int = 0
    #: In an incremental snapshot, rows [0, base_rows) are the base snapshot's and the arrays and the buffer hold only
    #: the rows after them (`ends` stay offsets from the partition's start); 0: the whole partition.
    base_rows: int = 0


_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
#: A stored row's seq and the u32 length of the string right after it (`_split_stored`).
_SEQ_AND_LENGTH = struct.Struct("<QI")
#: Compact a partition once this many head rows are dead and they are at least half of it.
COMPACT_AFTER = 1024


def is_log_shaped(table: TableDef) -> bool:
    """Whether a table's shape is a log: see the module docstring (the rule is by shape, never by table name)."""
    if table.event or table.auto_inc or table.scheduled_reducer or table.primary_key or len(table.columns) < 2:
        return False
    (first, first_type), (second, second_type) = table.columns[0], table.columns[1]
    if first_type != at.STRING or second_type != at.U64:
        return False
    if table.unique_keys() != ((first, second),):
        return False
    return all(group[0] == first for group in table.all_indexes())


class Partition:
    """The live rows of one partition key, in sequence order (see the module docstring)."""

    __slots__ = ("buf", "ends", "hashes", "head", "key", "pending", "prefix", "seqs", "sets", "snap_rows")

    def __init__(self, key: str, prefix: bytes, others: int) -> None:
        self.key = key
        self.prefix = prefix
        #: The rows' bytes: a `bytearray` once written to; loaded from a snapshot, a read-only view of its mapping
        #: (copied into a `bytearray` at the first write), which `pending` holds until its checksum is checked.
        self.buf: bytearray | memoryview = bytearray()
        self.pending: Section | Chunks | None = None
        self.seqs = array("Q")
        self.ends = array("Q")
        self.head = 0
        self.hashes = [array("I") for _ in range(others)]
        #: Per other index, the set of `hashes` (None until an idempotency check needs it: a partition loaded from a
        #: snapshot and never appended to costs no set, ~70 bytes per row, and no time at start).
        self.sets: list[set[int]] | None = None
        #: Rows the last snapshot captured as they still are (only appended to since): an incremental snapshot
        #: writes the rows after them; -1 (a new partition, or compacted, rebuilt, cut below): the whole partition.
        self.snap_rows = -1

    def readable(self) -> bytearray | memoryview:
        """The rows' bytes, checked against the snapshot's checksum first when they came from one."""
        pending = self.pending
        if pending is not None:
            self.buf = pending.verified()
            self.pending = None
        return self.buf

    def writable(self) -> bytearray:
        """The rows' bytes as a `bytearray` (a mapped snapshot's view is copied at the partition's first write)."""
        buf = self.readable()
        if isinstance(buf, memoryview):
            buf = self.buf = bytearray(buf)
        return buf

    def key_set(self, column: int) -> set[int]:
        """The set of one other index's hashes (built at the first need, then kept up to date by `append`)."""
        sets = self.sets
        if sets is None:
            sets = self.sets = [set(hashes) for hashes in self.hashes]
        return sets[column]

    def live(self) -> int:
        return len(self.seqs) - self.head

    def find(self, seq: int) -> int:
        """Position of `seq` among the live rows, or -1."""
        seqs = self.seqs
        i = bisect_left(seqs, seq, self.head)
        return i if i < len(seqs) and seqs[i] == seq else -1

    def row_bytes(self, i: int) -> bytes:
        buf = self.buf if self.pending is None else self.readable()
        start = self.ends[i - 1] if i else 0
        return self.prefix + _U64.pack(self.seqs[i]) + buf[start : self.ends[i]]

    def rows_between(self, first: int, stop: int) -> list[bytes]:
        """The stored bytes of the rows at positions [first, stop), in order: a resume's initial rows (one loop with
        the buffer, offsets and key bound once, ~2x `row_bytes` per row)."""
        if first >= stop:
            return []
        buf = self.buf if self.pending is None else self.readable()
        prefix, pack = self.prefix, _U64.pack
        start = self.ends[first - 1] if first else 0
        out = []
        for seq, end in zip(self.seqs[first:stop], self.ends[first:stop], strict=True):
            out.append(prefix + pack(seq) + buf[start:end])
            start = end
        return out

    def tail_equals(self, i: int, tail: memoryview) -> bool:
        buf = self.buf if self.pending is None else self.readable()
        start = self.ends[i - 1] if i else 0
        return self.ends[i] - start == len(tail) and buf[start : self.ends[i]] == tail

    def append(self, seq: int, tail: bytes | memoryview, hashes: list[int]) -> None:
        buf = self.buf
        if type(buf) is not bytearray:
            buf = self.writable()
        buf += tail
        self.seqs.append(seq)
        self.ends.append(len(buf))
        sets = self.sets
        for column, value in enumerate(hashes):
            self.hashes[column].append(value)
            if sets is not None:
                sets[column].add(value)

    def rebuild(self, rows: list[tuple[int, bytes, list[int]]]) -> None:
        """Replace every row (dead head dropped) by `rows`, given in sequence order."""
        self.buf = bytearray()
        self.pending = None
        self.snap_rows = -1
        self.seqs = array("Q")
        self.ends = array("Q")
        self.head = 0
        self.hashes = [array("I") for _ in self.hashes]
        self.sets = None
        for seq, tail, hashes in rows:
            self.append(seq, tail, hashes)

    def rows(self) -> list[tuple[int, bytes, list[int]]]:
        """Every live row as (seq, tail, hashes)."""
        out = []
        ends, buf = self.ends, self.readable()
        for i in range(self.head, len(self.seqs)):
            start = ends[i - 1] if i else 0
            out.append((self.seqs[i], bytes(buf[start : ends[i]]), [h[i] for h in self.hashes]))
        return out

    def compact(self) -> None:
        """Drop the dead head rows' space: the buffer, offsets and hashes start at the first live row."""
        head = self.head
        if not head:
            return
        cut = self.ends[head - 1]
        buf = self.readable()
        if isinstance(buf, memoryview):
            self.buf = bytearray(buf[cut:])
        else:
            del buf[:cut]
        self.seqs = self.seqs[head:]
        self.ends = array("Q", [end - cut for end in self.ends[head:]])
        self.hashes = [h[head:] for h in self.hashes]
        self.sets = None
        self.head = 0
        self.snap_rows = -1


class RowRun(Iterator[bytes]):
    """Rows `first..stop` of one partition as an index range answers them, packed when made into the row list a
    subscription sends (`row_list`), and read row by row from that when iterated.

    `Partition.rows_between` is the one Python builder of a partition's stored rows: where the C `pack_run` was not
    compiled, the run is `BsatnRowList.from_rows` of its rows (tests/host/test_log_table.py holds both equal).

    A resume (`stream_id = 'x' AND seq > n`) asks for exactly such a run; building each row's bytes
    (`prefix + seq + tail`) only for `BsatnRowList.from_rows` to join them again was 40% of a catch-up's host CPU
    (docs/performance.md "Round 5 — catchup2"). Here the run is copied once, straight from the partition's buffer
    into the packed list, with no object per row (in C, `spacetime/_rowlist.c`, where it was compiled). The rows
    are distinct (one partition, one row per seq), so callers need not dedupe a run.
    """

    __slots__ = ("_iter", "_rows")

    #: Shorter ranges (a reducer's lookups) stay a list of rows: packing pays only for many.
    SHORTEST = 256

    def __init__(self, part: Partition, first: int, stop: int) -> None:
        self._iter: Iterator[bytes] | None = None
        if stop <= first:
            self._rows = BsatnRowList.empty()
            return
        if _pack_run is None:  # not compiled: the rows as `rows_between` builds them, packed as any row list is
            self._rows = BsatnRowList.from_rows(part.rows_between(first, stop))
            return
        ends = part.ends
        begins = ends[first - 1 : stop - 1] if first else array("Q", [0]) + ends[: stop - 1]
        buf = part.readable()  # a mapped snapshot's section is verified before any of its bytes are packed
        # compiled (spacetime/_rowlist.c): one call, no Python step per row
        data, hint = _pack_run(buf, part.prefix, part.seqs[first:stop], begins, ends[first:stop])
        if isinstance(hint, int) and hint <= MAX_FIXED_ROW_SIZE:
            self._rows = BsatnRowList(FixedSize(hint), data)
        elif isinstance(hint, int):
            self._rows = BsatnRowList(RowOffsets(tuple(range(0, len(data), hint))), data)
        else:
            self._rows = BsatnRowList(RowOffsets(hint), data)

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[bytes]:
        rows = self._iter
        if rows is None:
            rows = self._iter = iter(self._rows.rows())
        return rows  # the rows' own iterator (the same position as `next` on the run): C-speed loops

    def __next__(self) -> bytes:
        return next(iter(self))

    def row_list(self) -> BsatnRowList:
        """The run as a `BsatnRowList`, the size hint chosen as `BsatnRowList.from_rows` chooses it."""
        return self._rows


class LogRows(Mapping[bytes, tuple[Any, ...]]):
    """A log table's rows: reads as `RowMap` does (bytes → decoded row), stored per partition (module docstring).

    Iteration is partition by partition (in the order partitions were created), each in sequence order.
    """

    def __init__(
        self,
        decode: Callable[[bytes], tuple[Any, ...]],
        key_of_others: list[Callable[[tuple[Any, ...]], Key]],
        key_columns: Callable[[bytes, int], tuple[Any, int]],
        encode_tails: list[Callable[[Key], bytes]],
        raw_string_key: bool = False,
    ) -> None:
        self._decode = decode
        self.encode_tails = encode_tails
        #: The one other index is (partition, the string column right after seq) — the sync module's idempotency
        #: key: its hash is the CRC-32 of that string's bytes as they sit in the row (`_split_stored`).
        self._raw_string_key = raw_string_key
        #: With such a key: (the key string a lookup last hashed, its CRC-32). An append of a row holding that very
        #: string object (the module looks a key up, then appends it) takes the hash from here instead of hashing
        #: the string's bytes again; the identity check makes a stale entry harmless.
        self.key_hint: tuple[str, int] | None = None
        #: The partition the last `add` stored into: `add_stored` appends the rows continuing it in runs (a replay
        #: appends runs of one partition), without a lookup or a parse of their key.
        self._last: Partition | None = None
        #: The datastore's upper bound of a key prefix (`datastore.TOP`), set by `log_store_parts`.
        self.top: object = None
        self._cache = DecodedRows()
        self._count = 0
        #: Moves on every change of the rows (`change_stamp`): `load_segments`, `add_stored`, `append_new`, `add`
        #: and `discard` take the next value before they change anything.
        self.stamp = next_stamp()
        self.partitions: dict[str, Partition] = {}
        #: Where `segments` copies a capture (the mapping of the previous incremental one, once nothing reads it).
        self._arena = CaptureArena()
        #: For each index other than (partition, seq) and (partition,): its key from a row (or from its key columns).
        self.key_of_others = key_of_others
        self._key_columns = key_columns
        #: For each of those indexes: a row's stored hash (`log_store_parts` sets a faster one for a string column).
        self.row_hashers: list[Callable[[tuple[Any, ...]], int]] = [
            _tail_hasher(key_of, encode) for key_of, encode in zip(key_of_others, encode_tails, strict=True)
        ]

    # -- locating a row from its bytes --------------------------------------------------------------------------

    def _split(self, row_bytes: bytes) -> tuple[str, int, int]:
        """(partition key, seq, offset of the tail) of a row's bytes."""
        (length,) = _U32.unpack_from(row_bytes, 0)
        end = 4 + length
        key = row_bytes[4:end].decode("utf-8")
        (seq,) = _U64.unpack_from(row_bytes, end)
        return key, seq, end + 8

    def locate(self, row_bytes: bytes) -> tuple[Partition, int] | None:
        """The partition and position holding exactly these bytes, or None."""
        try:
            key, seq, tail_at = self._split(row_bytes)
        except (struct.error, UnicodeDecodeError):
            return None
        part = self.partitions.get(key)
        if part is None:
            return None
        i = part.find(seq)
        if i < 0 or not part.tail_equals(i, memoryview(row_bytes)[tail_at:]):
            return None
        return part, i

    def key_columns(self, row_bytes: bytes) -> tuple[Any, ...]:
        """The leading columns of a row every index key is made of (checking a hash hit decodes no more)."""
        return self._key_columns(row_bytes, 0)[0]  # type: ignore[no-any-return]

    # -- Mapping --------------------------------------------------------------------------------------------------

    def __getitem__(self, row_bytes: bytes) -> tuple[Any, ...]:
        if row_bytes not in self._cache and self.locate(row_bytes) is None:
            raise KeyError(row_bytes)
        return self._cache.read(row_bytes, self._decode)

    def get(self, row_bytes: bytes, default: Any = None) -> Any:
        """The decoded row, or `default` when absent."""
        if row_bytes in self._cache:
            return self._cache[row_bytes]
        return self._cache.read(row_bytes, self._decode) if self.locate(row_bytes) is not None else default

    def __contains__(self, row_bytes: object) -> bool:
        if not isinstance(row_bytes, bytes):
            return False
        return row_bytes in self._cache or self.locate(row_bytes) is not None

    def __iter__(self) -> Iterator[bytes]:
        for part in list(self.partitions.values()):
            yield from part.rows_between(part.head, len(part.seqs))

    def __len__(self) -> int:
        return self._count

    # -- writes ---------------------------------------------------------------------------------------------------

    def _other_hashes(self, row: tuple[Any, ...]) -> list[int]:
        return [hasher(row) for hasher in self.row_hashers]

    def hash_of(self, slot: int, tail: Key) -> int | None:
        """The stored hash of an index key after its partition column (None when the values do not fit its types).

        CRC-32 of the key's bytes (`_tail_encoder`): the same in every process, so a snapshot keeps the hash arrays as
        they are. A hit is always checked against the row's key, so collisions only cost a check."""
        try:
            return zlib.crc32(self.encode_tails[slot](tail))
        except (TypeError, ValueError, OverflowError, AttributeError, UnicodeEncodeError):
            return None

    # -- snapshots --------------------------------------------------------------------------------------------------

    def segments(self, incremental: bool = False) -> list[Segment]:
        """Every partition as its buffers: copies (a snapshot is written off the event loop while rows change) made
        in one anonymous mapping, not on the heap, so the system gets the memory back when the snapshot is dropped
        (copies of a million events' buffers on the heap stayed resident, ~250 bytes per event, because the heap's
        top had moved past them by then); a buffer still mapped from the snapshot loaded at start never changes, so
        it is handed over as it is.

        `incremental`: a partition only appended to since the previous call (`Partition.snap_rows`) is captured as
        the rows after that call's (`Segment.base_rows`): a log grows by appends, so an incremental snapshot copies
        and writes what was appended, not the whole table. Any other partition is captured whole (compacted first).

        This runs on the event loop at every snapshot, once per partition, so a partition with nothing appended since
        is captured as empty pieces without touching the mapping, and an incremental capture writes into the
        previous one's mapping once nothing reads it (`CaptureArena`: a fresh mapping's page faults were most of the
        cost).
        """
        plan: list[tuple[Partition, int]] = []
        size = 0
        for part in self.partitions.values():
            first = part.snap_rows if incremental else -1
            count = len(part.seqs)
            if first <= 0 or first > count:
                part.compact()
                first, count = 0, len(part.seqs)
                buf = part.readable()
                if isinstance(buf, memoryview):
                    size += (count * 8) * (2 + len(part.hashes))
                else:
                    size += (count * 8) * (2 + len(part.hashes)) + len(buf)
            elif first < count:
                size += (count - first) * 8 * (2 + len(part.hashes)) + part.ends[-1] - part.ends[first - 1]
            plan.append((part, first))
        mapping = self._arena.take(size, keep=incremental)
        write, arena, at = mapping.write, memoryview(mapping), 0
        empty = memoryview(b"")
        segments: list[Segment] = []
        for part, first in plan:
            count = len(part.seqs)
            if first == count and first:
                # Nothing appended since the last capture: the base holds every row (the head may have moved).
                segments.append(Segment(part.prefix, empty, empty, empty, [empty] * len(part.hashes), part.head, first))
                continue
            pieces: list[memoryview] = []
            for source in (part.seqs, part.ends, *part.hashes):
                stop = at + write(source[first:] if first else source)
                pieces.append(arena[at:stop])
                at = stop
            buf = part.readable()
            if not first:
                if isinstance(buf, memoryview):
                    kept: Bytes = buf
                else:
                    stop = at + write(buf)
                    kept, at = arena[at:stop], stop
            else:
                stop = at + write(memoryview(buf)[part.ends[first - 1] :])
                kept, at = arena[at:stop], stop
            seqs, ends, *hashes = pieces
            segments.append(Segment(part.prefix, seqs, ends, kept, list[Bytes](hashes), part.head, first))
            part.snap_rows = count
        return segments

    def load_segments(self, segments: Iterable[Segment]) -> None:
        """Take partitions written by `segments` (a snapshot under today's schema) as they are: no row is decoded.

        A buffer mapped from the snapshot file stays a view of the mapping, checked against its checksum at its
        first use (`Partition.readable`); the partition's `set`s are built when an append first needs them."""
        self.stamp = next_stamp()
        for prefix, seqs, ends, buf, hashes, head, base_rows in segments:
            if base_rows:
                raise ValueError("an incremental snapshot's partition is loaded through its chain (host/snapshot.py)")
            (length,) = _U32.unpack_from(prefix, 0)
            key = prefix[4 : 4 + length].decode("utf-8")
            part = Partition(key, prefix, len(self.key_of_others))
            size = len(buf.view) if isinstance(buf, Section) else len(buf)
            if isinstance(buf, Section):
                part.buf, part.pending = buf.view, buf
            elif isinstance(buf, Chunks):
                part.buf, part.pending = memoryview(b""), buf
            else:
                part.buf = bytearray(buf)
            part.seqs.frombytes(seqs)
            part.ends.frombytes(ends)
            for column, stored in enumerate(hashes):
                part.hashes[column].frombytes(stored)
            if (
                len(part.seqs) != len(part.ends)
                or any(len(h) != len(part.seqs) for h in part.hashes)
                or (part.ends and part.ends[-1] != size)
                or not 0 <= head <= len(part.seqs)
            ):
                raise ValueError(f"log segment of partition {key!r} is inconsistent")
            if head == len(part.seqs):
                continue
            old = self.partitions.get(key)
            if old is not None:
                raise ValueError(f"log partition {key!r} loaded twice")
            part.head = head
            # The rows as the snapshot holds them: the next incremental snapshot writes only what comes after.
            part.snap_rows = len(part.seqs)
            self.partitions[key] = part
            self._count += len(part.seqs) - head

    def add_stored(self, rows: Sequence[bytes]) -> None:
        """Store rows in today's shape, in order (a replayed transaction's inserts, a snapshot's rows): `add(row,
        None, full=False)` for each, decoding nothing where it can.

        A run of rows continuing the partition the previous row went to is appended in one step (one `join` into the
        buffer, one `extend` per array), each row parsed once (`_split_stored`), its idempotency hash read straight
        from its bytes (`_raw_string_key`, the sync module's shape); any other row (another partition, a seq not past
        the end, another shape of table) takes `add`. ~2x faster per replayed event than `add`."""
        self.stamp = next_stamp()
        i, n = 0, len(rows)
        while i < n:
            part = self._last
            if part is None or part.pending is not None or not self._raw_string_key:
                self.add(rows[i], None, full=False)
                i += 1
                continue
            prefix = part.prefix
            tail_at = len(prefix) + 8
            last = part.seqs[-1] if len(part.seqs) > part.head else -1
            size = len(part.buf)
            seqs: list[int] = []
            ends: list[int] = []
            hashes: list[int] = []
            tails: list[memoryview] = []
            while i < n:
                row_bytes = rows[i]
                stored = _split_stored(row_bytes, tail_at) if row_bytes.startswith(prefix) else None
                if stored is None or stored[0] <= last:
                    break
                last, key_hash = stored
                tails.append(memoryview(row_bytes)[tail_at:])
                size += len(row_bytes) - tail_at
                seqs.append(last)
                ends.append(size)
                hashes.append(key_hash)
                i += 1
            if not seqs:
                self.add(rows[i], None, full=False)
                i += 1
                continue
            self._count += len(seqs)
            if len(seqs) == 1:  # an unbatched call's event: one append, no join
                part.append(seqs[0], tails[0], hashes)
                continue
            buf = part.writable()
            buf += b"".join(tails)
            part.seqs.extend(seqs)
            part.ends.extend(ends)
            part.hashes[0].extend(hashes)
            if part.sets is not None:
                part.sets[0].update(hashes)

    def append_new(self, row_bytes: bytes, row: tuple[Any, ...]) -> bool:
        """Store a row that extends its partition (a new partition, or a seq past its last live row), else do
        nothing and return False.

        Such a row cannot be stored already, by its bytes or by its `(partition, seq)` (the table's only unique
        key), so an insert that gets True skips the presence and unique checks: the append path of a log, once per
        event, parses the row's key once instead of three times. Any other row takes `add` after those checks.
        """
        self.stamp = next_stamp()
        (length,) = _U32.unpack_from(row_bytes, 0)
        tail_at = 12 + length  # after the key's u32 length and bytes, and the u64 seq
        key = row[0]
        if type(key) is not str:  # a subclass: the key as the row's bytes hold it
            key = row_bytes[4 : 4 + length].decode("utf-8")
        part = self.partitions.get(key)
        hint = self.key_hint
        if hint is not None and row[2] is hint[0]:  # set only with `_raw_string_key`: the one other hash, known
            (seq,) = _U64.unpack_from(row_bytes, tail_at - 8)
            hashes = [hint[1]]
        elif self._raw_string_key:
            stored = _split_stored(row_bytes, tail_at)
            if stored is None:  # never for a row of this table's type: the checked path decides
                return False
            seq, key_hash = stored
            hashes = [key_hash]
        else:
            (seq,) = _U64.unpack_from(row_bytes, tail_at - 8)
            hashes = self._other_hashes(row) if self.key_of_others else []
        if part is not None and len(part.seqs) != part.head and seq <= part.seqs[-1]:
            return False
        if part is None:
            part = self.partitions[key] = Partition(key, row_bytes[: tail_at - 8], len(self.key_of_others))
        part.append(seq, memoryview(row_bytes)[tail_at:], hashes)
        self._count += 1
        return True  # not kept decoded: an append's row is read next from the transaction's changes, not from here

    def add(self, row_bytes: bytes, row: tuple[Any, ...] | None, full: bool = True) -> None:
        """Store a row's bytes. `row`, when given, is its decoded form (kept decoded: the likeliest next read), or
        with `full=False` only its leading key columns (a snapshot's row)."""
        self.stamp = next_stamp()
        key, seq, tail_at = self._split(row_bytes)
        stored = _split_stored(row_bytes, tail_at) if self._raw_string_key else None
        if stored is not None:
            hashes = [stored[1]]
        elif self.key_of_others:
            hashes = self._other_hashes(self._key_columns(row_bytes, 0)[0] if row is None else row)
        else:
            hashes = []
        part = self.partitions.get(key)
        if part is None:
            prefix = row_bytes[: tail_at - 8]
            part = self.partitions[key] = Partition(key, prefix, len(self.key_of_others))
        self._last = part
        tail = memoryview(row_bytes)[tail_at:]
        seqs = part.seqs
        if len(seqs) == part.head or seq > seqs[-1]:
            part.append(seq, tail, hashes)
        elif part.head and seq == seqs[part.head - 1] and part.tail_equals(part.head - 1, tail):
            part.head -= 1  # a trimmed row put back (a rollback): its slot is still there
        else:
            i = bisect_left(seqs, seq, part.head)
            if i < len(seqs) and seqs[i] == seq:
                if part.tail_equals(i, tail):
                    return
                raise ValueError(f"log table already holds ({key!r}, {seq})")
            rows = part.rows()
            rows.insert(i - part.head, (seq, bytes(tail), hashes))
            part.rebuild(rows)
        self._count += 1
        if full and row is not None:
            self._cache.keep(row_bytes, row)

    def discard(self, row_bytes: bytes, known: tuple[Any, ...] | None = None) -> tuple[Any, ...] | None:
        """Forget a row; the decoded row, or None when it was not there (`known`: as `RowMap.discard`)."""
        found = self.locate(row_bytes)
        if found is None:
            return None
        self.stamp = next_stamp()
        part, i = found
        row = self._cache.pop(row_bytes, None)
        if row is None:
            row = self._decode(row_bytes) if known is None else known
        self._count -= 1
        last = len(part.seqs) - 1
        if i == part.head:
            part.head += 1
            if part.head > last:
                del self.partitions[part.key]
                if self._last is part:
                    self._last = None
            elif part.head >= COMPACT_AFTER and 2 * part.head >= len(part.seqs):
                part.compact()
        elif i == last:
            if part.snap_rows > i:
                part.snap_rows = -1  # a row the last snapshot holds is gone: the next one writes the partition whole
            start = part.ends[i - 1]
            del part.writable()[start:]
            part.seqs.pop()
            part.ends.pop()
            for hashes in part.hashes:
                hashes.pop()  # the set keeps the value: a filter may say "maybe" for a key that is gone
        else:
            rows = part.rows()
            del rows[i - part.head]
            part.rebuild(rows)
        return row


def _split_stored(row_bytes: bytes, tail_at: int) -> tuple[int, int] | None:
    """(seq, stored hash of the idempotency key) of a row whose partition prefix (u32 length, key) ends at
    `tail_at - 8`, or None when the row is too short to hold the string that follows its seq.

    The one parse of the stored layout (prefix, u64 seq, u32 length and bytes of the key) that the replay
    (`add_stored`), the live append (`append_new`) and `add` share: the hash is the CRC-32 of the key's bytes as
    they sit in the row, the same value `hash_of` computes from the decoded key."""
    if len(row_bytes) < tail_at + 4:
        return None
    seq, length = _SEQ_AND_LENGTH.unpack_from(row_bytes, tail_at - 8)
    end = tail_at + 4 + length
    if end > len(row_bytes):
        return None
    return seq, zlib.crc32(row_bytes[tail_at + 4 : end])


def _matches_low(key: Key, low: Key | None, inclusive: bool) -> bool:
    """`low <= key` (or `<`), with `<` only: the bound's `TOP` orders itself through `__lt__`/`__gt__` alone."""
    return low is None or (not key < low if inclusive else low < key)


def _matches_high(key: Key, high: Key | None, inclusive: bool) -> bool:
    """`key <= high` (or `<`), with `<` only (see `_matches_low`)."""
    return high is None or (not high < key if inclusive else key < high)


def _partitions_between(rows: LogRows, low: Key | None, high: Key | None) -> list[Partition]:
    """Partitions that can hold keys in [low, high], sorted by partition key."""
    name = _plain_str(low[0]) if low and high and low[0] == high[0] else None
    if name is not None:
        part = rows.partitions.get(name)
        return [] if part is None else [part]
    return [rows.partitions[k] for k in sorted(rows.partitions)]


class SeqIndex:
    """The `(partition, seq)` unique index, or the `(partition,)` index, of a log table: answered from `seqs`."""

    def __init__(self, rows: LogRows, columns: tuple[str, ...], positions: tuple[int, ...], unique: bool) -> None:
        self.rows = rows
        self.columns = columns
        self.positions = positions
        self.unique = unique
        self.key_of: Callable[[tuple[Any, ...]], Key] = (
            (lambda row: (row[0],)) if len(columns) == 1 else (lambda row: (row[0], row[1]))
        )
        self._entries = _Entries(self)

    @property
    def entries(self) -> Any:
        """What the generic index's sorted map offers readers: `get(key)` and `items()`."""
        return self._entries

    def pairs(self) -> Iterator[tuple[Key, bytes]]:
        """Every (key, row bytes) in key order."""
        rows = self.rows
        for name in sorted(rows.partitions):
            part = rows.partitions[name]
            for i in range(part.head, len(part.seqs)):
                yield ((name,) if len(self.columns) == 1 else (name, part.seqs[i])), part.row_bytes(i)

    def add(self, key: Key, row_bytes: bytes) -> None:
        """Nothing to do: the row's place in its partition is the index."""

    def load(self, entries: Iterable[tuple[Key, bytes]]) -> None:
        """Nothing to do (see `add`)."""

    def remove(self, key: Key, row_bytes: bytes) -> None:
        """Nothing to do (see `add`)."""

    def first(self, key: Key) -> bytes | None:
        """The first row `lookup(key)` yields, or None."""
        return next(iter(self.lookup(key)), None)

    def lookup(self, key: Key) -> Iterator[bytes]:
        """Rows whose key equals `key`, or starts with it."""
        if not key:
            return self.range(None, None)
        name = key[0] if type(key[0]) is str else _plain_str(key[0])  # the call only for a subclass
        part = self.rows.partitions.get(name) if name is not None else None
        if part is None:
            return iter(())
        if len(key) == 1:
            return iter(part.rows_between(part.head, len(part.seqs)))
        i = part.find(key[1]) if type(key[1]) is int else -1
        return iter([part.row_bytes(i)] if i >= 0 else [])

    def range(self, low: Key | None, high: Key | None, inclusive: tuple[bool, bool] = (True, True)) -> Iterator[bytes]:
        """Rows with `low <= key <= high` in key order (None = unbounded)."""
        out: list[bytes] = []
        low_in, high_in = inclusive
        width = len(self.columns)
        span = _one_partition_span(self.rows, low, high, low_in, high_in) if width == 2 else None
        if span is not None:
            part, first, stop = span
            if stop - first >= RowRun.SHORTEST:
                return RowRun(part, first, stop)
            return iter(part.rows_between(first, stop))
        for part in _partitions_between(self.rows, low, high):
            first, stop = _seq_bounds(part, low, high, low_in, high_in, width)
            out.extend(part.rows_between(first, stop))
        return iter(out)


def _one_partition_span(
    rows: LogRows, low: Key | None, high: Key | None, low_in: bool, high_in: bool
) -> tuple[Partition, int, int] | None:
    """The reducers' and resumes' range, `(p, a) .. (p, b | TOP)` or `(p,) .. (p, …)`, by bisecting `seqs` directly
    (None: any other shape of bounds, for the general path)."""
    if not low or not high or len(high) != 2 or low[0] != high[0]:
        return None
    name = _plain_str(low[0])
    part = rows.partitions.get(name) if name is not None else None
    if part is None:
        return None
    seqs, head = part.seqs, part.head
    if len(low) == 1:
        if not low_in:
            return None
        first = head
    elif len(low) == 2 and type(low[1]) is int:
        first = (bisect_left if low_in else bisect_right)(seqs, low[1], head)
    else:
        return None
    top = high[1]
    if type(top) is int:
        stop = (bisect_right if high_in else bisect_left)(seqs, top, first)
    elif top is rows.top and high_in:
        stop = len(seqs)
    else:
        return None
    return part, first, max(first, stop)


def _seq_bounds(
    part: Partition, low: Key | None, high: Key | None, low_in: bool, high_in: bool, width: int
) -> tuple[int, int]:
    """The positions [first, stop) of a partition whose keys (width 1: `(p,)`, 2: `(p, seq)`) are within bounds."""
    seqs, head, n = part.seqs, part.head, len(part.seqs)

    def key(i: int) -> Key:
        return (part.key,) if width == 1 else (part.key, seqs[i])

    lo, hi = head, n
    while lo < hi:  # first position satisfying the low bound (monotonic in position)
        mid = (lo + hi) // 2
        if _matches_low(key(mid), low, low_in):
            hi = mid
        else:
            lo = mid + 1
    first = lo
    lo, hi = first, n
    while lo < hi:  # first position past the high bound
        mid = (lo + hi) // 2
        if _matches_high(key(mid), high, high_in):
            lo = mid + 1
        else:
            hi = mid
    return first, lo


class _Entries(Mapping[Key, Any]):
    """`index.entries` of a log table's index, as the generic index's sorted map reads: key → the row's bytes, or a
    set of them when several rows share the key. Built from the partitions when read (diagnostics, join mirrors)."""

    def __init__(self, index: SeqIndex | HashIndex) -> None:
        self._index = index

    def get(self, key: Key, default: Any = None) -> Any:
        """What `entries.get` answers (a unique check on every insert: no exception on a miss)."""
        found = list(self._index.lookup(key)) if len(key) == len(self._index.columns) else []
        if not found:
            return default
        return found[0] if len(found) == 1 else set(found)

    def __getitem__(self, key: Key) -> Any:
        found = self.get(key)
        if found is None:
            raise KeyError(key)
        return found

    def __iter__(self) -> Iterator[Key]:
        return (key for key, _ in self.items())

    def __len__(self) -> int:
        return sum(1 for _ in self.items())

    def items(self) -> Any:
        return iter(_grouped(self._index.pairs()).items())


def _grouped(pairs: Iterable[tuple[Key, bytes]]) -> dict[Key, Any]:
    grouped: dict[Key, Any] = {}
    for key, row_bytes in pairs:
        bucket = grouped.get(key)
        if bucket is None:
            grouped[key] = row_bytes
        elif type(bucket) is bytes:
            grouped[key] = {bucket, row_bytes}
        else:
            bucket.add(row_bytes)
    return grouped


class HashIndex:
    """Another index of a log table, `(partition, columns…)`: a hash per row, keys checked on the decoded row."""

    def __init__(
        self,
        rows: LogRows,
        slot: int,
        columns: tuple[str, ...],
        positions: tuple[int, ...],
        key_of: Callable[[tuple[Any, ...]], Key],
    ) -> None:
        self.rows = rows
        self.slot = slot
        self.columns = columns
        self.positions = positions
        self.unique = False
        self.key_of = key_of
        self._entries = _Entries(self)

    @property
    def entries(self) -> Any:
        """What the generic index's sorted map offers readers: `get(key)` and `items()`."""
        return self._entries

    def pairs(self) -> Iterator[tuple[Key, bytes]]:
        """Every (key, row bytes) in key order (rows decoded and sorted)."""
        return iter(self._sorted(self.rows.partitions[name] for name in sorted(self.rows.partitions)))

    def add(self, key: Key, row_bytes: bytes) -> None:
        """Nothing to do: `LogRows.add` stored the row's hash."""

    def load(self, entries: Iterable[tuple[Key, bytes]]) -> None:
        """Nothing to do (see `add`)."""

    def remove(self, key: Key, row_bytes: bytes) -> None:
        """Nothing to do: `LogRows.discard` dropped the row's hash."""

    def _sorted(self, parts: Iterable[Partition]) -> list[tuple[Key, bytes]]:
        out = []
        decode = self.rows.key_columns
        for part in parts:
            for i in range(part.head, len(part.seqs)):
                row_bytes = part.row_bytes(i)
                out.append((self.key_of(decode(row_bytes)), row_bytes))
        out.sort(key=lambda pair: pair[0])
        return out

    def first(self, key: Key) -> bytes | None:
        """The first row `lookup(key)` yields, or None."""
        return next(iter(self.lookup(key)), None)

    def lookup(self, key: Key) -> Iterator[bytes]:
        """Rows whose key equals `key` (by hash, then checked), or starts with it (decoded and sorted)."""
        if len(key) < len(self.columns):
            width = len(key)
            pairs = self._sorted(_partitions_between(self.rows, key, key))
            return iter([b for k, b in pairs if k[:width] == key])
        name = key[0] if type(key[0]) is str else _plain_str(key[0])  # the call only for a subclass
        part = self.rows.partitions.get(name) if name is not None else None
        if part is None:
            return iter(())
        try:
            wanted = self.rows.hash_of(self.slot, key[1:])
        except TypeError:
            return iter(())
        if wanted is not None and self.rows._raw_string_key:
            self.rows.key_hint = (key[1], wanted)
        if wanted is None or wanted not in part.key_set(self.slot):
            return iter(())
        hashes = part.hashes[self.slot]
        out = []
        i = part.head - 1
        while True:
            try:
                i = hashes.index(wanted, i + 1)
            except ValueError:
                break
            row_bytes = part.row_bytes(i)
            if self.key_of(self.rows.key_columns(row_bytes)) == key:
                out.append(row_bytes)
        return iter(out)

    def range(self, low: Key | None, high: Key | None, inclusive: tuple[bool, bool] = (True, True)) -> Iterator[bytes]:
        """Rows with `low <= key <= high` in key order: decoded and sorted (no log plan ranges over these)."""
        low_in, high_in = inclusive
        pairs = self._sorted(_partitions_between(self.rows, low, high))
        return iter([b for k, b in pairs if _matches_low(k, low, low_in) and _matches_high(k, high, high_in)])


def log_store_parts(
    table: TableDef,
    decode: Callable[[bytes], tuple[Any, ...]],
    key_columns: Callable[[bytes, int], tuple[Any, int]],
    generic_key_of: Callable[[tuple[str, ...]], Callable[[tuple[Any, ...]], Key]],
    top: object,
) -> tuple[LogRows, dict[tuple[str, ...], Any]]:
    """The rows and indexes of a log-shaped table (`is_log_shaped`), in `table.all_indexes()` order."""
    first, second = table.columns[0][0], table.columns[1][0]
    others = [group for group in table.all_indexes() if group not in ((first, second), (first,))]
    types = dict(table.columns)
    tails = [_tail_encoder(tuple(types[c] for c in group[1:])) for group in others]
    raw = len(table.columns) > 2 and others == [(first, table.columns[2][0])] and table.columns[2][1] == at.STRING
    rows = LogRows(decode, [generic_key_of(group) for group in others], key_columns, tails, raw)
    rows.top = top
    for slot, group in enumerate(others):
        if len(group) == 2 and types[group[1]] == at.STRING:
            rows.row_hashers[slot] = _string_hasher(table.column_index(group[1]))
    indexes: dict[tuple[str, ...], Any] = {}
    for group in table.all_indexes():
        positions = tuple(table.column_index(c) for c in group)
        if group in ((first, second), (first,)):
            indexes[group] = SeqIndex(rows, group, positions, unique=len(group) == 2)
        else:
            indexes[group] = HashIndex(rows, others.index(group), group, positions, generic_key_of(group))
    return rows, indexes


def _tail_encoder(types: tuple[at.AlgebraicType, ...]) -> Callable[[Key], bytes]:
    """The bytes an index key's columns after the partition are hashed from: one string column (an idempotency
    key) as its UTF-8 bytes, called on every append twice; any other tail as its BSATN encoding."""
    if types == (at.STRING,):
        return _one_string
    return bsatn.codec(at.product(*((None, t) for t in types))).encode


def _tail_hasher(
    key_of: Callable[[tuple[Any, ...]], Key], encode: Callable[[Key], bytes]
) -> Callable[[tuple[Any, ...]], int]:
    """A row's stored hash for an index: CRC-32 of its key's columns after the partition (`_tail_encoder`)."""
    return lambda row: zlib.crc32(encode(key_of(row)[1:]))


def _string_hasher(position: int) -> Callable[[tuple[Any, ...]], int]:
    """`_tail_hasher` of an index whose only column after the partition is a string (the idempotency key), reading
    the column straight from the row: called on every append, the generic key tuple and slice were most of it."""

    def hasher(row: tuple[Any, ...]) -> int:
        value = row[position]
        if type(value) is not str:  # a subclass (hashed as its string), or no string at all (TypeError)
            return zlib.crc32(_one_string((value,)))
        return zlib.crc32(value.encode("utf-8"))

    return hasher


def _one_string(tail: Key) -> bytes:
    (value,) = tail
    text = _plain_str(value)
    if text is None:
        raise TypeError("str value expected")
    return text.encode("utf-8")


def _plain_str(value: object) -> str | None:
    """`value` as a plain `str`, or None when it is no string.

    A `str` subclass (a `StrEnum` member, a module's own key type) is taken as its string, as the row encoder
    (`bsatn`: any `str`) and the generic store (keys compared by value) take it; values decoded from the wire are
    always plain, so only a Python module's own values are ever converted."""
    if type(value) is str:
        return value
    return str.__str__(value) if isinstance(value, str) else None


def segment_rows(segments: Iterable[Segment]) -> Iterator[bytes]:
    """Each row's bytes of snapshot segments, for a table read another way (an older schema, or no longer a log)."""
    for prefix, seqs_bytes, ends_bytes, stored, _hashes, head, _base in segments:
        buf = stored.verified() if isinstance(stored, (Section, Chunks)) else stored
        seqs, ends = array("Q"), array("Q")
        seqs.frombytes(seqs_bytes)
        ends.frombytes(ends_bytes)
        start = ends[head - 1] if head else 0
        for seq, end in zip(seqs[head:], ends[head:], strict=True):
            yield prefix + _U64.pack(seq) + buf[start:end]
            start = end
