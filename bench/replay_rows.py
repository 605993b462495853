"""CPU per row of storing `sync_event` rows as a start does (the log replayed, an older snapshot's rows loaded).

`python -m bench.replay_rows [--events 100000] [--old /tmp/old/src] [--rounds 3]` encodes `--events` rows of the
sync module's `sync_event` (100 streams, the bench's ~250-byte payload, transactions of 100 events of one stream) and
times, in a fresh datastore each, the process CPU per row of: `runs` (each transaction's inserts through
`put_current_many`, as the replay of a batched call), `one_row_txs` (one row per call, the replay of unbatched
calls), `snapshot_rows` (every row through `load_current`, sorted by stream, as a snapshot written before log tables
had their own sections) and `one_at_a_time` (`put_current` per row). No disk, no process start: what a change to the
log table's stored-row path moves (`host/logtable.py`, docs/performance.md "Round 6 — tidy").

With `--old`, every round runs one worker process per tree (this tree and the old one on `PYTHONPATH`, `bench.ab`),
the order flipped every round, and the medians are printed per tree.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from pathlib import Path

from bench.ab import REPO, report_old_against_new, run_worker, with_pythonpath

STREAMS = 100
PER_TX = 100


def encoded_transactions(events: int) -> list[list[bytes]]:
    """`events` rows of `sync_event` as stored, grouped as transactions of `PER_TX` rows of one stream."""
    from autopilot_sync.host.datastore import Datastore
    from autopilot_sync.host.hosted_module import PythonModule
    from autopilot_sync.module import module
    from autopilot_sync.spacetime.values import Timestamp
    from bench.ours import event_input
    from bench.suite import payload

    store = Datastore(PythonModule(module))["sync_event"]
    now = Timestamp(1_700_000_000_000_000)
    items = [event_input("x", n, payload(n)) for n in range(100)]
    per_stream = max(1, events // STREAMS)
    out: list[list[bytes]] = []
    for first in range(1, per_stream + 1, PER_TX):
        for s in range(STREAMS):
            stream = f"stream-{s:04d}"
            tx = []
            for seq in range(first, min(first + PER_TX, per_stream + 1)):
                item = items[seq % 100]
                values = (stream, seq, f"{stream}:{seq}", item.kind, item.payload, item.payload_hash, now, now, 1, "")
                tx.append(store.encode(store.make_row(values)))
            out.append(tx)
    return out


def measure(events: int) -> dict[str, float]:
    """Process CPU µs per row of each way of storing the rows (module docstring)."""
    from autopilot_sync.host.datastore import Datastore
    from autopilot_sync.host.hosted_module import PythonModule
    from autopilot_sync.module import module

    transactions = encoded_transactions(events)
    rows = [row for tx in transactions for row in tx]
    by_stream = sorted(rows, key=lambda row: row[: 4 + int.from_bytes(row[:4], "little")])  # stable: seq order kept
    result: dict[str, float] = {}
    for mode in ("runs", "one_row_txs", "snapshot_rows", "one_at_a_time"):
        store = Datastore(PythonModule(module))["sync_event"]
        gc.collect()
        started = time.process_time()
        if mode == "runs":
            for tx in transactions:
                store.put_current_many(tx)
        elif mode == "one_row_txs":
            for row in rows:
                store.put_current_many([row])
        elif mode == "snapshot_rows":
            store.load_current(by_stream)
        else:
            for row in rows:
                store.put_current(row)
        result[f"{mode}_cpu_us_per_row"] = (time.process_time() - started) / len(rows) * 1e6
        if len(store.rows) != len(rows):
            raise RuntimeError(f"{mode}: {len(store.rows)} rows stored of {len(rows)}")
    return result


def _worker(src: str | None, events: int) -> dict[str, float]:
    env = with_pythonpath({**os.environ, "PYTHONPATH": str(REPO)}, src)
    argv = ["-m", "bench.replay_rows", "--events", str(events), "--worker"]
    return run_worker(argv, env, f"worker on {src or 'this tree'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replay_rows", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--old", type=Path, default=None, help="the old tree's src folder: alternate with it")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker or args.old is None:
        print(json.dumps(measure(args.events)))
        return 0
    report_old_against_new(str(args.old), args.rounds, lambda src: _worker(src, args.events))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
