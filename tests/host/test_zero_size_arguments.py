"""A reducer argument of nested zero-size arrays, sent by a real client to a real host process, is refused whole.

A module may declare any parameter type, `Vec<Vec<()>>` included; before one budget of zero-size values per decoded
input (`bsatn.MAX_ZERO_SIZE_ELEMENTS`), each 4-byte inner length could ask for 2^20 units, so a 68-byte call made
the host build 16 million list slots (~130 MB; 260 bytes, 526 MB). Now the call gets the same typed answer as any
undecodable argument (`InternalError("invalid arguments for reducer ...")`, docs/protocol.md "Reducer results"),
the host's peak memory does not move by more than one budget's worth, and the host keeps serving.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from autopilot_sync.client import connect
from autopilot_sync.client.results import ReducerCommitted, ReducerInternalError
from autopilot_sync.devtools.processes import ServiceProcess, start_host
from autopilot_sync.spacetime import bsatn

DATABASE = "units"
MODULE_SOURCE = '''
"""Test module, never shipped: a reducer whose parameter is an array of arrays of units."""
from autopilot_sync.bindings.context import ReducerContext
from autopilot_sync.bindings.module import Module
from autopilot_sync.spacetime import algebraic as at

module = Module("units", version="1")
module.table("tally", [("id", at.U64), ("units", at.U64)], primary_key="id", auto_inc=["id"])


@module.reducer(("groups", at.array(at.array(at.UNIT))))
def count_units(ctx: ReducerContext, groups: list[list[tuple[()]]]) -> None:
    """Store how many units the groups held."""
    ctx.db.tally.insert((0, sum(len(group) for group in groups)))
'''
#: 16 inner arrays each claiming the whole budget: 68 bytes.
GROUPS = 16
#: How far the host's peak RSS may move for the refused call: one budget's list (8 MB) decoded twice (the C walk's,
#: then the Python codec's), with room; without the budget the 16 arrays took ~130 MB.
PEAK_GROWTH_BOUND = 64 * 1024 * 1024


def _peak_rss(pid: int) -> int:
    """The process's peak resident set (`VmHWM`), in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def _start(tmp_path: Path) -> ServiceProcess:
    (tmp_path / "units_module.py").write_text(MODULE_SOURCE)
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
        "AUTOPILOT_SYNC_HOST_FSYNC": "false",
    }
    return start_host(tmp_path / "data", module="units_module", database=DATABASE, env=env)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the host's peak RSS from /proc")
async def test_nested_unit_arrays_in_a_reducer_call_are_refused_and_the_host_stays_healthy(tmp_path: Path) -> None:
    host = _start(tmp_path)
    try:
        attacker = await connect(host.url, DATABASE)
        bystander = await connect(host.url, DATABASE)
        try:
            warm = await bystander.call_raw("count_units", struct.pack("<III", 2, 3, 4))
            assert isinstance(warm, ReducerCommitted), warm
            before = _peak_rss(host.process.pid)
            hostile = struct.pack("<I", GROUPS) + struct.pack("<I", bsatn.MAX_ZERO_SIZE_ELEMENTS) * GROUPS
            refused = await attacker.call_raw("count_units", hostile)
            assert isinstance(refused, ReducerInternalError), refused
            limit = bsatn.MAX_ZERO_SIZE_ELEMENTS
            assert refused.message == (
                f"invalid arguments for reducer count_units: array length {limit} over the limit of {limit}"
                " zero-size values per input (1 per element, 0 left)"
            )
            growth = _peak_rss(host.process.pid) - before
            assert growth < PEAK_GROWTH_BOUND, f"the host's peak RSS grew {growth} bytes for {len(hostile)} bytes"
            # exactly the budget still decodes, for the attacker too (its connection stays open)
            half = limit // 2
            at_limit = await attacker.call_raw("count_units", struct.pack("<III", 2, half, half))
            assert isinstance(at_limit, ReducerCommitted), at_limit
            after = await bystander.call_raw("count_units", struct.pack("<II", 1, 5))
            assert isinstance(after, ReducerCommitted), after
            await (await bystander.subscribe(["SELECT * FROM tally"])).applied()
            assert sorted(row.units for row in bystander.cache.rows("tally")) == [5, 7, limit]
        finally:
            await attacker.close()
            await bystander.close()
        assert host.process.poll() is None
    finally:
        host.stop()
