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
        moved: dict[str, tuple[int, str, bytes | None, int]],
        found: dict[str, Head | None],
    ) -> None:
        """Write every moved head back to the table once and remember it so.

        `moved`: stream -> (new head seq, its chain value, the value's 32 bytes, epoch); `found`: each stream's head
        as the call read it (None for a new stream). The stamp is compared once before the first write and recorded
        after the last: in between only this loop writes the table, each write changing its own stream's row alone,
        so every other head held stays the table's. A write that raises leaves the recorded stamp behind the table's
        (the call rolls back), and the next read starts over.
        """
        if table.stamp != self.stamp:
            self._restart(table)
        make = table.row
        for stream_id, (seq, chain, digest, _epoch) in moved.items():
            stored = found[stream_id]
            if stored is None:
                floor = stream_chain.genesis(stream_id, FIRST_EPOCH)
                row = table.insert(make(stream_id, seq, 1, FIRST_EPOCH, now, chain, floor))
                head = Head(seq, chain, FIRST_EPOCH, 1, floor, digest, row)
            else:  # positionally, in the row's column order (`StreamHead`'s): no keyword parsing, no copy into it
                epoch, retained, floor = stored.epoch, stored.retained_from_seq, stored.floor_chain
                row = table.update(make(stream_id, seq, retained, epoch, now, chain, floor), stored.row)
                head = Head(seq, chain, epoch, retained, floor, digest, row)
            self._keep(stream_id, head)
        self.stamp = table.stamp

    def _keep(self, stream_id: str, head: Head) -> None:
        if len(self.heads) >= self.LIMIT and stream_id not in self.heads:
            self.heads.clear()
        self.heads[stream_id] = head

    def _restart(self, table: TableAccess) -> None:
        """The table changed under the book: forget every head (each is found again when read)."""
        self.heads.clear()
        self.stamp = table.stamp
