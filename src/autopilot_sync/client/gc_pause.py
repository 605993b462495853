"""Pause Python's cyclic garbage collector while one large message is decoded into the cache.

A catch-up message allocates tens of thousands of container objects (a row, its `RowOp`, its cache entry, its
change) and none of them can form a cycle the collector would need to find; yet every 700 allocations start a
young-generation collection and every few hundred of those a full one over the whole heap, which was ~20% of the
SDK's CPU for a 10,000-row message (more in an application with a large heap). The pause is bounded by one
message, taken only for messages of at least `MIN_ROWS` rows, and only when the collector was on (the caller's own
`gc.disable()` is left alone); the collector resumes, and collects as usual, right after.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

#: Messages smaller than this allocate too little for a pause to matter.
MIN_ROWS = 1000


@contextmanager
def paused_gc(rows: int) -> Iterator[None]:
    """Run the block with the cyclic collector off when `rows` is large and it was on."""
    if rows < MIN_ROWS or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
