"""Where a snapshot's capture copies a log table's buffers: an anonymous mapping, kept for the next capture.

A capture (`LogRows.segments`) copies what was appended since the last snapshot into a mapping rather than the heap,
so the memory goes back to the system once the snapshot is written (docs/performance.md, "Round 5 — large"). A
fresh mapping costs a page fault per 4 KiB at its first write, several µs each on a virtual machine: a capture of
~2 MB (1,000 streams appended to since the last snapshot, one a second at full fan-in) spent much of its event-loop
time faulting pages, not copying (docs/performance.md, "Round 8 — tidy3"). So the mapping of an incremental capture
is kept and written over by the next one, once nothing reads the previous capture any more.

Whether something still reads it is not assumed from the scheduler's state but asked of the mapping: `mmap.resize`
(to the length it has) refuses while any view of it (a `Segment`'s piece) is alive, so a capture still held (a write
still running, a traceback keeping its frame) is never overwritten; the next capture then takes a fresh mapping. Only
Linux resizes an anonymous mapping (`mremap`); elsewhere every capture takes a fresh one, as before. A capture
larger than `KEEP_MAX` (a whole snapshot of a large store) is never kept: its memory goes back at once.
"""

from __future__ import annotations

import mmap
import sys

#: The largest mapping kept between captures: a few incremental captures' worth (one per 4 MiB of log by default),
#: far below a whole capture of a large store (~400 MB at a million events).
KEEP_MAX = 16 * 1024 * 1024
#: Whether an anonymous mapping can be resized in place (the check that no view of it is alive).
REUSABLE = sys.platform == "linux"


class CaptureArena:
    """Hands out the mapping a capture writes into: the kept one when no view of it is alive, else a fresh one."""

    __slots__ = ("_kept",)

    def __init__(self) -> None:
        self._kept: mmap.mmap | None = None

    def take(self, size: int, *, keep: bool) -> mmap.mmap:
        """A mapping of at least `size` bytes (at least 1), positioned at 0; `keep`: a capture whose mapping may be
        kept for the next one (an incremental capture: what a busy host takes again and again).

        A kept mapping is `KEEP_MAX` long from the start and never resized: only the pages a capture writes are ever
        resident, so its length costs address space only, and growing a shared anonymous mapping in place would
        leave its new pages without backing (SIGBUS at the first write)."""
        size = max(size, 1)
        kept = self._kept
        if kept is not None and size <= len(kept):
            try:
                # The same length: nothing changes, but it is refused while a view of the previous capture is alive.
                kept.resize(len(kept))
            except BufferError:
                pass
            else:
                kept.seek(0)
                return kept
        if keep and REUSABLE and size <= KEEP_MAX:
            self._kept = fresh = mmap.mmap(-1, KEEP_MAX)
            return fresh
        return mmap.mmap(-1, size)
