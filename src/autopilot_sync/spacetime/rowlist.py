"""`BsatnRowList`: the packed list of encoded rows every row-carrying server message uses.

The host builds one per table per query set per transaction and the client splits every one it receives, so both
directions live here with the exact rule the real server applies (`crates/core/src/subscription/websocket_building.rs`,
`BsatnRowListBuilder`): no rows = `RowOffsets([])`; every row the same non-zero length that fits a u16 =
`FixedSize(len)`; anything else (differing lengths, zero-length rows, rows longer than 65535 bytes) = `RowOffsets`
holding the start offset of each row.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate
from operator import gt

from autopilot_sync.spacetime.errors import DecodeError

#: Largest row length `FixedSize` can carry (`RowSize = u16`).
MAX_FIXED_ROW_SIZE = 0xFFFF


@dataclass(frozen=True, slots=True)
class FixedSize:
    """Size hint arm 0: every row in `rows_data` is `size` bytes long."""

    size: int


@dataclass(frozen=True, slots=True)
class RowOffsets:
    """Size hint arm 1: the start offset of each row; a row ends where the next starts (or at the end of the data)."""

    offsets: tuple[int, ...]


RowSizeHint = FixedSize | RowOffsets


@dataclass(frozen=True, slots=True)
class BsatnRowList:
    """Rows of one table, each already BSATN-encoded, packed back to back with a hint on where each one starts."""

    size_hint: RowSizeHint
    rows_data: bytes

    @classmethod
    def empty(cls) -> BsatnRowList:
        """The list with no rows, as the real server encodes it."""
        return _EMPTY

    @classmethod
    def from_rows(cls, rows: Sequence[bytes]) -> BsatnRowList:
        """Pack encoded rows, choosing the size hint exactly as the real server's `BsatnRowListBuilder` does."""
        if not rows:
            return _EMPTY
        lengths = list(map(len, rows))
        first = lengths[0]
        if 0 < first <= MAX_FIXED_ROW_SIZE and lengths.count(first) == len(lengths):
            return cls(FixedSize(first), b"".join(rows))
        lengths.pop()
        return cls(RowOffsets(tuple(accumulate(lengths, initial=0))), b"".join(rows))

    def __len__(self) -> int:
        hint = self.size_hint
        if isinstance(hint, FixedSize):
            return len(self.rows_data) // hint.size if hint.size else 0
        return len(hint.offsets)

    def validate(self) -> None:
        """Raise DecodeError unless the hint describes `rows_data` exactly (used on every list read off the wire).

        FixedSize: a non-zero size dividing the data length (size 0 only with no data). RowOffsets: starts at 0 when
        there is data, never decreasing (equal neighbours are legal: zero-length rows, e.g. unit rows, are stored
        that way by the real server), never beyond the data; no offsets means no data.
        """
        hint = self.size_hint
        size = len(self.rows_data)
        if isinstance(hint, FixedSize):
            if not 0 <= hint.size <= MAX_FIXED_ROW_SIZE:
                raise DecodeError(f"FixedSize row size {hint.size} outside u16")
            if hint.size == 0:
                if size:
                    raise DecodeError(f"FixedSize(0) with {size} bytes of rows")
            elif size % hint.size:
                raise DecodeError(f"{size} bytes of rows is not a multiple of FixedSize({hint.size})")
            return
        offsets = hint.offsets
        if not offsets:
            if size:
                raise DecodeError(f"RowOffsets([]) with {size} bytes of rows")
            return
        if offsets[0] != 0:
            raise DecodeError(f"first row offset is {offsets[0]}, not 0")
        if any(map(gt, offsets, offsets[1:])):  # one C-level pass; the loop below only to name the fault
            previous = 0
            for offset in offsets:
                if offset < previous:
                    raise DecodeError(f"row offset {offset} goes back from {previous}")
                previous = offset
        if offsets[-1] > size:
            raise DecodeError(f"row offset {offsets[-1]} beyond the {size} bytes of rows")

    def rows(self) -> list[bytes]:
        """Split back into one byte string per row; DecodeError when the hint does not fit the data."""
        self.validate()
        data = self.rows_data
        hint = self.size_hint
        if isinstance(hint, FixedSize):
            step = hint.size
            return [data[i : i + step] for i in range(0, len(data), step)] if step else []
        offsets = hint.offsets
        if not offsets:
            return []
        ends = (*offsets[1:], len(data))
        return [data[start:end] for start, end in zip(offsets, ends, strict=True)]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.rows())


_EMPTY = BsatnRowList(RowOffsets(()), b"")

_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")
_U64S: dict[int, struct.Struct] = {}


def _u64s(count: int) -> struct.Struct:
    fmt = _U64S.get(count)
    if fmt is None:
        fmt = struct.Struct(f"<{count}Q")
        if count <= 4096:
            _U64S[count] = fmt
    return fmt


def encode_row_list_into(out: bytearray, rows: BsatnRowList) -> None:
    """Append the BSATN of a row list (`size_hint` sum, then `rows_data` bytes) to `out`."""
    hint = rows.size_hint
    if isinstance(hint, FixedSize):
        out.append(0)
        out += _U16.pack(hint.size)
    else:
        offsets = hint.offsets
        out.append(1)
        out += _U32.pack(len(offsets))
        if offsets:
            out += _u64s(len(offsets)).pack(*offsets)
    data = rows.rows_data
    out += _U32.pack(len(data))
    out += data


def decode_row_list(data: bytes, offset: int) -> tuple[BsatnRowList, int]:
    """Read one row list at `offset`, validated (see `BsatnRowList.validate`); returns it and the offset after it."""
    end = len(data)
    if offset >= end:
        raise DecodeError("truncated input: row list size hint tag missing")
    tag = data[offset]
    offset += 1
    hint: RowSizeHint
    if tag == 0:
        if offset + 2 > end:
            raise DecodeError("truncated input: FixedSize row size")
        hint = FixedSize(_U16.unpack_from(data, offset)[0])
        offset += 2
    elif tag == 1:
        if offset + 4 > end:
            raise DecodeError("truncated input: RowOffsets count")
        (count,) = _U32.unpack_from(data, offset)
        offset += 4
        if count * 8 > end - offset:
            raise DecodeError(f"RowOffsets count {count} exceeds the {end - offset} bytes left")
        hint = RowOffsets(_u64s(count).unpack_from(data, offset) if count else ())
        offset += count * 8
    else:
        raise DecodeError(f"invalid RowSizeHint tag {tag}")
    if offset + 4 > end:
        raise DecodeError("truncated input: rows_data length")
    (size,) = _U32.unpack_from(data, offset)
    offset += 4
    if size > end - offset:
        raise DecodeError(f"rows_data length {size} exceeds the {end - offset} bytes left")
    rows = BsatnRowList(hint, bytes(data[offset : offset + size]))
    rows.validate()
    return rows, offset + size
