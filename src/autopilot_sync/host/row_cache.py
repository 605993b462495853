"""The last rows read, kept decoded: one small cache both row stores use (`datastore.RowMap`, `logtable.LogRows`).

A stored row is only its BSATN bytes. Reducers read the same few rows again and again (a stream's head, the limits
row), so the last `CACHED` rows read or written stay decoded, keyed by their bytes; when full the cache is simply
emptied (no per-read bookkeeping, and never more than `CACHED` decoded rows per table).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Row = tuple[Any, ...]


class DecodedRows(dict[bytes, Row]):
    """Decoded rows by their bytes, at most `CACHED` of them: `read` decodes on a miss and keeps the result."""

    CACHED = 256

    __slots__ = ()

    def read(self, row_bytes: bytes, decode: Callable[[bytes], Row]) -> Row:
        """The decoded row: from the cache, or decoded with `decode` and kept."""
        row = self.get(row_bytes)
        if row is None:
            row = decode(row_bytes)
            self.keep(row_bytes, row)
        return row

    def keep(self, row_bytes: bytes, row: Row) -> None:
        """Keep one decoded row (a row just written is the likeliest next read); empties the cache when full."""
        if len(self) >= self.CACHED:
            self.clear()
        self[row_bytes] = row
