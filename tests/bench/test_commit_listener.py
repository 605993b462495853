"""`bench.commit_listener` measures a subscriber that really receives every append (a number, not a no-op)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.commit_listener import run


async def test_commit_listener_times_one_on_commit_per_append_that_reaches_the_reader() -> None:
    times = await run(20, 3, None)  # raises unless each of the 20 appends reached the subscribed reader
    assert len(times) == 20 and all(t >= 0 for t in times)
