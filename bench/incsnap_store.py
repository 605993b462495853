"""Row g's store as a host taking incremental snapshots leaves it, built from a store without them, and the capture
cost (the event loop's stall) of a whole and of an incremental snapshot at that size.

`python -m bench.incsnap_store --source DIR --target DIR [--delta-every-bytes 4194304] [--deltas-max 15]`: DIR is a
host data directory of the sync module (row g's fill, e.g. 1,000,000 events: its newest snapshot and the log after
it). The target is a copy whose newest snapshot is loaded, written again whole (this tree's format), and whose log
after it is replayed record by record through the host's own code (`recovery.replay`), taking an incremental
snapshot (`LogRows.segments(incremental=True)`, `write_snapshot`) every `--delta-every-bytes` of records and a whole
one (captured the same way, made whole by `write_consolidated`) after `--deltas-max` incremental ones, as
`SnapshotScheduler` does; the log is rewritten as the host would have
left it (a new segment at every snapshot). What remains after the newest snapshot is the tail a start replays. Then
the capture's CPU (`time.process_time`, on the event loop in a host) is printed for each incremental snapshot taken
and for `--whole-rounds` whole captures of the final state with every partition a `bytearray` (a host that has run
through its fill, as before this change, copied all of that at every snapshot). `bench/large_start.py --store-for`
then starts hosts on it and on the source.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import struct
import time
import zlib
from pathlib import Path

from autopilot_sync.host.commitlog import list_segments, read_records
from autopilot_sync.host.datastore import Datastore
from autopilot_sync.host.hosted_module import PythonModule
from autopilot_sync.host.logtable import LogRows
from autopilot_sync.host.recovery import load_snapshot, replay
from autopilot_sync.host.snapshot import (
    Snapshot,
    latest_snapshot,
    read_header,
    write_consolidated,
    write_snapshot,
)
from autopilot_sync.host.system_tables import SYSTEM_TABLES
from autopilot_sync.host.tx_record import record_offset
from autopilot_sync.module import module
from autopilot_sync.spacetime import moduledef

_RECORD = struct.Struct("<II")


def capture(datastore: Datastore, offset: int, schema: str, incremental: bool, base: tuple[int, int]) -> Snapshot:
    """What `SnapshotScheduler.after_commit` captures on the event loop."""
    stores = [(name, store) for name, store in datastore.tables.items() if not store.table.event]
    return Snapshot(
        offset,
        schema,
        {name: list(store.rows) for name, store in stores if not isinstance(store.rows, LogRows)},
        {name: store.rows.segments(incremental) for name, store in stores if isinstance(store.rows, LogRows)},
        base=base[0] if incremental else 0,
        base_id=base[1] if incremental else 0,
    )


def records_after(commitlog: Path, offset: int) -> list[bytes]:
    """Every record payload after `offset`, in order."""
    out = []
    for _first, path in list_segments(commitlog):
        for item in read_records(path):
            if not isinstance(item, tuple):
                raise RuntimeError(f"damaged record in {path}")
            payload = item[1]
            if record_offset(payload) > offset:
                out.append(payload)
    return out


def write_segment(commitlog: Path, payloads: list[bytes]) -> None:
    if payloads:
        name = commitlog / f"{record_offset(payloads[0]):020d}.log"
        name.write_bytes(b"".join(_RECORD.pack(len(p), zlib.crc32(p)) + p for p in payloads))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--target", type=Path, required=True)
    parser.add_argument("--delta-every-bytes", type=int, default=4 * 1024 * 1024)
    parser.add_argument("--deltas-max", type=int, default=15)
    parser.add_argument("--whole-rounds", type=int, default=3)
    args = parser.parse_args()
    if args.target.exists():
        shutil.rmtree(args.target)
    shutil.copytree(args.source, args.target)
    snapshots, commitlog = args.target / "snapshots", args.target / "commitlog"
    hosted = PythonModule(module)
    schema = moduledef.schema_hash(hosted.definition())
    meta = json.loads((args.target / "meta.json").read_text())
    datastore = Datastore(hosted, SYSTEM_TABLES)
    loaded = latest_snapshot(snapshots)
    assert loaded is not None, "the source has no snapshot"
    offset = load_snapshot(datastore, loaded, frozenset(meta["schema_hashes"]))
    payloads = records_after(commitlog, offset)
    for path in [*snapshots.glob("*.snap"), *commitlog.glob("*.log")]:
        path.unlink()  # the loaded snapshot stays mapped
    path = write_snapshot(snapshots, capture(datastore, offset, schema, False, (0, 0)))
    base, chain = (offset, read_header(path).snapshot_id), 1
    stalls: list[float] = []
    consolidations: list[tuple[float, float]] = []
    pending: list[bytes] = []
    size = 0
    for payload in payloads:
        _, offset, _ = replay(datastore, [payload], offset, current=True)
        pending.append(payload)
        size += len(payload)
        if size >= args.delta_every_bytes:
            whole = chain > args.deltas_max  # captured incrementally all the same, made whole off the loop
            started = time.process_time()
            snapshot = capture(datastore, offset, schema, True, base)
            stalls.append(time.process_time() - started)
            if whole:
                started, wall = time.process_time(), time.perf_counter()
                path = write_consolidated(snapshots, snapshot)
                consolidations.append((time.process_time() - started, time.perf_counter() - wall))
            else:
                path = write_snapshot(snapshots, snapshot)
            base, chain = (offset, read_header(path).snapshot_id), 1 if whole else chain + 1
            write_segment(commitlog, pending)
            pending, size = [], 0
    write_segment(commitlog, pending)
    tail = sum(len(p) for p in pending)
    print(
        f"{args.target}: {len(payloads)} records after the source's snapshot; {len(list(snapshots.glob('*.snap')))}"
        f" snapshots (chain of {chain}), a tail of {len(pending)} records ({tail / 2**20:.1f} MiB) to replay"
    )
    if stalls:
        print(
            f"incremental capture CPU (event loop), {len(stalls)} snapshots of ~{args.delta_every_bytes / 2**20:.0f} "
            f"MiB of log: median {statistics.median(stalls) * 1000:.1f} ms, max {max(stalls) * 1000:.1f} ms"
        )
    for cpu, wall in consolidations:
        print(f"a whole snapshot made from its chain in the writer thread: {cpu:.2f} s CPU, {wall:.2f} s wall")
    rows = [store.rows for store in datastore.tables.values() if isinstance(store.rows, LogRows)]
    for log_rows in rows:
        for part in log_rows.partitions.values():
            part.writable()  # a host that ran through the fill holds every partition on the heap
    wholes = []
    for _ in range(args.whole_rounds):
        started = time.process_time()
        capture(datastore, offset, schema, False, base)
        wholes.append(time.process_time() - started)
    print(
        f"whole capture CPU (event loop) of the final state, {args.whole_rounds} rounds: median "
        f"{statistics.median(wholes) * 1000:.0f} ms ({', '.join(f'{w * 1000:.0f}' for w in wholes)})"
    )


if __name__ == "__main__":
    main()
