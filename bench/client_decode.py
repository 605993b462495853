"""The Python SDK's CPU for one catch-up message: decode, row ops, cache apply (issue 21, row (c)'s client side).

`python -m bench.client_decode [--rows 10000] [--rounds 7] [--profile]` builds one `SubscribeApplied` carrying
`--rows` rows of `sync_event` (the suite's ~250-byte payload, one stream, as row (c) resumes it), encodes it as the
host sends it (v2 frame, no compression) and times, in this process, what the SDK does with it: frame decode
(`session.decode_frame`), `updates.ops_from_query_rows` and `ClientCache.apply` into a fresh cache. Prints the median
rows/s per stage over `--rounds` (CPU time, `time.process_time`). To compare two trees, run it with each tree's
`src` first on PYTHONPATH, alternating. `--profile` prints a cProfile of one round instead.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time

from autopilot_sync.client.cache import ChangeCause, ClientCache
from autopilot_sync.client.schema import ClientSchema
from autopilot_sync.client.session import PROTOCOL_V2, decode_frame
from autopilot_sync.client.updates import ops_from_query_rows
from autopilot_sync.module import module
from autopilot_sync.spacetime import messages as m
from autopilot_sync.spacetime.frames import Compression, encode_server_frame
from autopilot_sync.spacetime.values import Timestamp
from bench.suite import payload_bytes

HASH = "h" * 64


def build_frame(schema: ClientSchema, rows: int) -> bytes:
    """One v2 frame: `SubscribeApplied` with `rows` sync_event rows of one stream."""
    table = schema.table("sync_event")
    text = payload_bytes(0).decode()
    encoded = [
        table._codec.encode(
            ("bench", seq, f"bench:{seq}", "bench.event", text, HASH, Timestamp(seq), Timestamp(seq), 0, HASH)
        )
        for seq in range(1, rows + 1)
    ]
    single = m.SingleTableRows("sync_event", m.BsatnRowList.from_rows(encoded))
    message = m.SubscribeApplied(1, 1, m.QueryRows((single,)))
    return encode_server_frame(m.encode_server_message(message), Compression.NONE)


def one_round(schema: ClientSchema, frame: bytes) -> tuple[float, float, float]:
    """CPU seconds of: frame decode, ops, cache apply."""
    t0 = time.process_time()
    (message,) = decode_frame(frame, PROTOCOL_V2)
    t1 = time.process_time()
    assert isinstance(message, m.SubscribeApplied)
    ops = ops_from_query_rows(schema, message.query_set_id, message.rows, insert=True)
    t2 = time.process_time()
    cache = ClientCache()
    cache.apply(ops, ChangeCause.SUBSCRIBE_APPLIED)
    t3 = time.process_time()
    return t1 - t0, t2 - t1, t3 - t2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    schema = ClientSchema.from_json(module.schema_json())
    frame = build_frame(schema, args.rows)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(one_round, schema, frame)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
        return
    one_round(schema, frame)
    samples = [one_round(schema, frame) for _ in range(args.rounds)]
    stages = [statistics.median(s[i] for s in samples) for i in range(3)]
    total = statistics.median(sum(s) for s in samples)
    print(
        f"rows {args.rows}: frame {stages[0] * 1e3:.1f} ms, ops {stages[1] * 1e3:.1f} ms, "
        f"apply {stages[2] * 1e3:.1f} ms, total {total * 1e3:.1f} ms = {args.rows / total:,.0f} rows/s (CPU)"
    )


if __name__ == "__main__":
    main()
