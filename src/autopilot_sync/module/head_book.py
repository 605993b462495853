"""Each stream's head as the sync module last read or wrote it, kept between calls: an append reads it without a row
find.

Why: a fan-in call carries events of ~20 streams, and before its first event of a stream the append found the head
row (an index lookup, a row decode — a table of 1,000 streams outgrows the host's cache of decoded rows —, a copy
into the binding) and parsed its chain value: with the write-back, most of what one more stream cost a call
(docs/performance.md "Round 8 — heads").

The table stays the truth, on disk and in memory: the book only holds what it read from the table or wrote to it,
and it is trusted only while the table is unchanged otherwise. It lives with the table's store
(`TableAccess.memo`: gone when recovery starts over or a publish replaces the tables) with the table's change stamp
(`TableAccess.stamp`) at which every head it holds is the table's row. Every read and every write first compares the
stamp: one that moved — a write the book did not make: `trim_stream`, `reset_stream`, `on_start`, retention, a
rolled-back call (its undo moves the stamp), recovery, the TypeScript twin on the same table — empties the book, so
each head is found again. Its own write of a row keeps the other heads true (only that row changed) and records the
new stamp. At most `HeadBook.LIMIT` streams are held (then it starts over empty).
"""

from __future__ import annotations

from typing import NamedTuple

from autopilot_sync.bindings.context import TableAccess
from autopilot_sync.bindings.tables import Row
from autopilot_sync.contract import stream_chain
from autopilot_sync.spacetime.values import Timestamp
from autopilot_sync.sync_bindings import StreamHead

#: The book's name in the table's memo.
MEMO_KEY = "autopilot_sync.module.head_book"
#: The epoch of a stream's first event.
FIRST_EPOCH = 1


class Head(NamedTuple):
    """A stored head as an append reads it and its write-back keeps it."""

    head_seq: int
    head_chain: str
    epoch: int
    retained_from_seq: int
    floor_chain: str
    #: The 32 bytes of `head_chain` when the book wrote it (None for a head found in the table: parsed when linked to).
    digest: bytes | None
    #: The row as the table stores it (its row class): handed to `update` as the row it replaces, which then need not
    #: decode it again (the table outgrows the host's cache of decoded rows at a few hundred streams).
    row: Row


class HeadBook:
    """Heads by stream id, each equal to the table's row at change stamp `stamp` (the module docstring)."""

    #: Streams held at most: ~0.5 KB each (the chain values' text and bytes).
    LIMIT = 16_384

    __slots__ = ("heads", "stamp")

    def __init__(self) -> None:
        self.heads: dict[str, Head] = {}
        self.stamp = 0  # no table's stamp: the first use compares unequal and starts empty

    @classmethod
    def of(cls, table: TableAccess) -> HeadBook:
        """The book kept with `table` (the `stream_head` table), made on first use."""
        book = table.memo.get(MEMO_KEY)
        if not isinstance(book, HeadBook):
            book = table.memo[MEMO_KEY] = cls()
        return book

    def read(self, table: TableAccess, stream_id: str) -> Head | None:
        """The stream's head as the table holds it now (None for a stream without one)."""
        if table.stamp != self.stamp:
            self._restart(table)
        head = self.heads.get(stream_id)
        if head is None:
            found = table.find("stream_id", stream_id)
            if found is None:
                return None
            row = StreamHead.from_values(found)
            head = Head(row.head_seq, row.head_chain, row.epoch, row.retained_from_seq, row.floor_chain, None, found)
            self._keep(stream_id, head)
        return head

    def write(
        self,
        table: TableAccess,
        now: Timestamp,
        stream_id: str,
        stored: Head | None,
        seq: int,
        chain: str,
        digest: bytes,
    ) -> None:
        """Move the stream's head (`stored`, as this call read it, None for a new stream) to `seq` with chain value
        `chain` (`digest` its 32 bytes) in the table, and remember it so."""
        if table.stamp != self.stamp:
            self._restart(table)
        if stored is None:
            floor = stream_chain.genesis(stream_id, FIRST_EPOCH)
            row = table.insert(table.row(stream_id, seq, 1, FIRST_EPOCH, now, chain, floor))
            head = Head(seq, chain, FIRST_EPOCH, 1, floor, digest, row)
        else:  # positionally, in the row's column order (`StreamHead`'s): no keyword parsing, no copy into it
            epoch, retained, floor = stored.epoch, stored.retained_from_seq, stored.floor_chain
            row = table.update(table.row(stream_id, seq, retained, epoch, now, chain, floor), stored.row)
            head = Head(seq, chain, epoch, retained, floor, digest, row)
        self.stamp = table.stamp  # only this stream's row changed: every other head is still the table's
        self._keep(stream_id, head)

    def _keep(self, stream_id: str, head: Head) -> None:
        if len(self.heads) >= self.LIMIT and stream_id not in self.heads:
            self.heads.clear()
        self.heads[stream_id] = head

    def _restart(self, table: TableAccess) -> None:
        """The table changed under the book: forget every head (each is found again when read)."""
        self.heads.clear()
        self.stamp = table.stamp
