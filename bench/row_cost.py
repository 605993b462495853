"""What one retained `sync_event` row costs the host in memory, and where it goes.

`python -m bench.row_cost [--events 20000]` fills an in-process engine (sync module, fsync off) with the suite's
~250-byte payload, 500 events per call, and reports: Python heap bytes per event (`tracemalloc`, the same thing
the process RSS grows by, without allocator slack) and a breakdown of one row by structure: its BSATN bytes (the
row's identity and the only copy the table keeps), its slot in the table's dict, and each index's entry for it
(key tuple, bucket, sorted-dict slot; an interned leading string counts as shared). The breakdown is what
docs/performance.md's design change for the 600-bytes goal is sized from. `--reader` subscribes one client to each
stream's events through the row-level security join (as a reader's resume does) before the fill, so the heap figure
includes what the subscription engine keeps per event for it (its join mirror of `sync_event`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

from autopilot_sync.host.call_outcome import CallStatus
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.host.logtable import LogRows
from autopilot_sync.host.subscriptions import SubscriptionManager
from autopilot_sync.module import module
from autopilot_sync.spacetime.values import ConnectionId, Identity
from bench.ours import ENGINE_ISSUER, event_input, trust_engine
from bench.suite import payload

PRODUCER = Caller(
    Identity(7), ConnectionId(7), {"iss": ENGINE_ISSUER, "sub": "bench", "scopes": ["sync.append"], "streams": ["*"]}
)
BATCH = 500
#: set, dict and sorted-dict slots: a dict entry is ~3 machine words plus its share of the table; SortedDict keeps a
#: dict and a sorted list of keys (one pointer, plus the list's growth)
DICT_SLOT = 3 * 8 * 1.5
SORTED_SLOT = DICT_SLOT + 8 * 1.2


def deep_size(value: Any) -> int:
    """Bytes of an object and what it holds (strings, ints, nested tuples, slotted values)."""
    size = sys.getsizeof(value)
    if isinstance(value, tuple):
        size += sum(deep_size(item) for item in value)
    elif hasattr(value, "__slots__"):
        size += sum(deep_size(getattr(value, name)) for name in value.__slots__ if hasattr(value, name))
    return size


async def fill(engine: HostEngine, streams: int, per_stream: int) -> None:
    for s in range(streams):
        stream = f"rc-{s}"
        for start in range(1, per_stream + 1, BATCH):
            batch = [event_input(stream, seq, payload(seq)) for seq in range(start, min(per_stream + 1, start + BATCH))]
            outcome = await engine.call_reducer("append_sync_events", (batch,), PRODUCER)
            if outcome.status is not CallStatus.COMMITTED:
                raise RuntimeError(outcome.message)


def log_breakdown(engine: HostEngine) -> dict[str, float]:
    """Per row of a log table (`host/logtable.py`): its share of each partition's buffer, arrays and hash sets."""
    rows = engine.datastore["sync_event"].rows
    assert isinstance(rows, LogRows)
    count = max(1, len(rows))
    parts = rows.partitions.values()
    return {
        "buffer (row bytes after stream_id and seq, with bytearray slack)": sum(sys.getsizeof(p.buf) for p in parts)
        / count,
        "seqs + ends arrays": sum(sys.getsizeof(p.seqs) + sys.getsizeof(p.ends) for p in parts) / count,
        "other indexes: hash arrays": sum(sys.getsizeof(h) for p in parts for h in p.hashes) / count,
        "other indexes: hash sets (with their ints)": sum(
            sys.getsizeof(s) + sum(sys.getsizeof(v) for v in s) for p in parts for s in p.sets
        )
        / count,
    }


def breakdown(engine: HostEngine) -> dict[str, float]:
    store = engine.datastore["sync_event"]
    if isinstance(store.rows, LogRows):
        return log_breakdown(engine)
    row_bytes, row = next(iter(store.rows.items()))
    parts: dict[str, float] = {
        "BSATN bytes (the row's identity, its only stored copy)": sys.getsizeof(row_bytes),
        "rows dict slot": DICT_SLOT,
    }
    for columns, index in store.indexes.items():
        key = index.key_of(row)
        stored_key = index.entries.keys()[index.entries.bisect_left(key)]
        entry = index.entries[key]
        share = 1 / (len(entry) if isinstance(entry, set) else 1)
        bucket = sys.getsizeof(entry) * share if isinstance(entry, set) else 0
        # a leading string column is interned by the index (one object per stream, not per row)
        own = sum(deep_size(v) for v in (stored_key[1:] if len(stored_key) > 1 else stored_key))
        key_size = sys.getsizeof(stored_key) + own
        parts[f"index {columns}: key, bucket share, slot"] = key_size * share + bucket + SORTED_SLOT * share
    return parts


READER_QUERY = (
    "SELECT sync_event.* FROM sync_event JOIN stream_reader ON sync_event.stream_id = stream_reader.stream_id "
    "WHERE sync_event.stream_id = '{stream}' AND sync_event.seq > 0"
)


def subscribe_reader(engine: HostEngine, streams: int) -> SubscriptionManager:
    """One client subscribed to every stream's events through the reader join, as the host's websocket wires it."""
    undelivered = getattr(engine, "undelivered_after", None)  # absent on trees before the log join mirror
    extra = (undelivered,) if undelivered is not None else ()
    subs = SubscriptionManager(engine.datastore, lambda: engine.offset, lambda: engine.durable_offset, None, *extra)
    engine.add_commit_listener(subs.on_commit)
    sqls = [READER_QUERY.format(stream=f"rc-{s}") for s in range(streams)]
    applied = subs.subscribe("reader", 1, 1, sqls, private_visible=True)
    if not hasattr(applied, "rows"):
        raise RuntimeError(f"reader subscription refused: {applied}")
    return subs


async def run(events: int, streams: int, reader: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="apsync-row-cost-") as scratch:
        engine = HostEngine(module, Path(scratch), "bench", EngineConfig(fsync=False))
        await engine.start()
        await trust_engine(engine)
        try:
            await fill(engine, 1, 10)  # warm: codecs, first stream
            subs = subscribe_reader(engine, streams) if reader else None
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            await fill(engine, streams, events // streams)
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            parts = breakdown(engine)
            del subs
            return {
                "events": events,
                "reader": reader,
                "heap_bytes_per_event": (after - before) / events,
                "breakdown_bytes": parts,
                "breakdown_total": sum(parts.values()),
            }
        finally:
            await engine.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.row_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--reader", action="store_true", help="a reader subscribed to every stream through the join")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(run(args.events, args.streams, args.reader)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
