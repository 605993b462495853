"""An equality on a composite index's leading column plus a range on the next reads only the rows in range.

The resume query (`stream_id = 'x' AND seq > n`) is the query every reconnecting client sends; with the
`(stream_id, seq)` index it must cost the rows after `n`, not the whole stream, and give exactly what a scan gives.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from autopilot_sync.bindings.module import Module
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.host.sql import SqlContext, access_path, compile_query, execute
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime.values import ConnectionId, Identity

WRITER = Caller(Identity(0xB0B), ConnectionId(1))

module = Module("composite", version="1")
module.table(
    "event",
    [("stream", at.STRING), ("seq", at.U64), ("kind", at.STRING), ("note", at.U32)],
    unique=[("stream", "seq")],
    indexes=[("stream",), ("kind", "seq", "note")],
)


@module.reducer(("stream", at.STRING), ("count", at.U64))
def fill(ctx: Any, stream: str, count: int) -> None:
    for seq in range(1, count + 1):
        ctx.db.event.insert((stream, seq, "odd" if seq % 2 else "even", seq % 3))


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[HostEngine]:
    engine = HostEngine(module, tmp_path, "composite", EngineConfig(fsync=False))
    await engine.start()
    for stream in ("a", "b", "c"):
        await engine.call_reducer("fill", (stream, 20), WRITER)
    yield engine
    await engine.stop()


def seqs(engine: HostEngine, sql: str) -> list[tuple[str, int]]:
    plan = compile_query(sql, SqlContext(engine.datastore))
    return sorted((str(row[0]), int(row[1])) for row in execute(plan, engine.datastore).rows)


async def test_resume_query_ranges_over_the_composite_index(engine: HostEngine) -> None:
    plan = compile_query("SELECT * FROM event WHERE stream = 'b' AND seq > 15", SqlContext(engine.datastore))
    path = access_path(plan, engine.datastore["event"])
    assert (path.kind, path.column, path.prefix) == ("index_range", "seq", 1)
    assert seqs(engine, "SELECT * FROM event WHERE stream = 'b' AND seq > 15") == [("b", s) for s in range(16, 21)]


async def test_composite_ranges_agree_with_a_scan(engine: HostEngine) -> None:
    for op in ("<", "<=", ">", ">="):
        for where in (f"stream = 'b' AND seq {op} 7", f"kind = 'odd' AND seq {op} 7", f"seq {op} 7 AND stream = 'c'"):
            via_index = seqs(engine, f"SELECT * FROM event WHERE {where}")
            via_scan = seqs(engine, f"SELECT * FROM event WHERE ({where}) OR note = 999")
            assert via_index == via_scan and via_index, (op, where)


async def test_full_key_equality_is_a_point_lookup(engine: HostEngine) -> None:
    plan = compile_query("SELECT * FROM event WHERE seq = 4 AND stream = 'a'", SqlContext(engine.datastore))
    path = access_path(plan, engine.datastore["event"])
    assert (path.kind, path.prefix) == ("index_eq", 2)
    assert seqs(engine, "SELECT * FROM event WHERE seq = 4 AND stream = 'a'") == [("a", 4)]
