"""How long a snapshot of a large `sync_event` table takes to load, in process: the log kind against the generic store.

`python -m bench.log_snapshot [--events 1000000] [--streams 100] [--rounds 3]` builds the sync module's datastore
with `--events` events of the suite's ~250-byte payload (rows put as a snapshot would put them), writes one snapshot
and times (CPU of this process, median of `--rounds`) reading it and loading it into an empty datastore, as a host's
start does (`recovery.load_snapshot`). `--generic N` also times the same for N events with the log kind switched
off (every row through `TableStore.load_current`, as before the log kind), for a per-row comparison. Also prints
the heap per event of the filled table (`tracemalloc`; `--no-heap` skips it). What a host's `ready` adds to this
is process start and the replay of the log written after the snapshot.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import autopilot_sync.host.datastore as datastore_module
from autopilot_sync.host.datastore import Datastore
from autopilot_sync.host.hosted_module import PythonModule
from autopilot_sync.host.logtable import LogRows
from autopilot_sync.host.recovery import load_snapshot
from autopilot_sync.host.snapshot import Snapshot, read_snapshot, write_snapshot
from autopilot_sync.module import module
from autopilot_sync.spacetime import moduledef
from autopilot_sync.spacetime.values import Timestamp
from bench.ours import event_input
from bench.stats import median
from bench.suite import payload


def fill(events: int, streams: int) -> Datastore:
    datastore = Datastore(PythonModule(module))
    store = datastore["sync_event"]
    per_stream = events // streams
    now = Timestamp(1_700_000_000_000_000)
    # the payload and its hash are made once per 100 seqs: what is stored is the same size, and the fill is faster
    items = [event_input("x", seq, payload(seq)) for seq in range(100)]
    for s in range(streams):
        stream = f"stream-{s:04d}"
        for seq in range(1, per_stream + 1):
            item = items[seq % 100]
            key = f"{stream}:{seq}"
            row = (stream, seq, key, item.kind, item.payload, item.payload_hash, now, now, 1, "")
            store.put_current(store.encode(store.make_row(row)))
    return datastore


def snapshot_of(datastore: Datastore) -> Snapshot:
    tables = {name: store for name, store in datastore.tables.items() if not store.table.event}
    return Snapshot(
        1,
        moduledef.schema_hash(PythonModule(module).definition()),
        {name: list(store.rows) for name, store in tables.items() if not isinstance(store.rows, LogRows)},
        {name: store.rows.segments() for name, store in tables.items() if isinstance(store.rows, LogRows)},
    )


def time_load(path: Path) -> tuple[float, float]:
    """(CPU seconds to read the file, CPU seconds to load it into an empty datastore)."""
    gc.collect()
    started = time.process_time()
    snapshot = read_snapshot(path)
    read = time.process_time() - started
    fresh = Datastore(PythonModule(module))
    hashes = frozenset({snapshot.schema_hash})
    started = time.process_time()
    load_snapshot(fresh, snapshot, hashes)
    loaded = time.process_time() - started
    return read, loaded


def measure(
    events: int, streams: int, rounds: int, scratch: Path, generic: bool, heap_too: bool = True
) -> dict[str, Any]:
    original = datastore_module.is_log_shaped
    if generic:
        datastore_module.is_log_shaped = lambda _table: False  # type: ignore[assignment]
    try:
        gc.collect()
        if heap_too:
            tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        datastore = fill(events, streams)
        gc.collect()
        heap = (tracemalloc.get_traced_memory()[0] - before) / events if heap_too else 0.0
        tracemalloc.stop()
        path = write_snapshot(scratch / ("generic" if generic else "log"), snapshot_of(datastore))
        del datastore
        reads, loads = [], []
        for _ in range(rounds):
            read, loaded = time_load(path)
            reads.append(read)
            loads.append(loaded)
        return {
            "events": events,
            "heap_bytes_per_event": round(heap),
            "snapshot_bytes": path.stat().st_size,
            "read_cpu_s": median(reads),
            "load_cpu_s": median(loads),
            "load_us_per_event": round(median(loads) / events * 1e6, 3),
        }
    finally:
        datastore_module.is_log_shaped = original


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.log_snapshot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--generic", type=int, default=0, help="also time the generic store with this many events")
    parser.add_argument("--no-heap", action="store_true", help="skip tracemalloc (2-3x faster fill)")
    args = parser.parse_args(argv)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="apsync-log-snapshot-") as scratch:
        out["log"] = measure(args.events, args.streams, args.rounds, Path(scratch), False, not args.no_heap)
        if args.generic:
            out["generic"] = measure(args.generic, args.streams, args.rounds, Path(scratch), True, not args.no_heap)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
