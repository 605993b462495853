"""Old against new BSATN decode cost in one run: what the per-input budget of zero-size values costs the common path.

`python -m bench.codec_budget_ab --old /tmp/old/src [--rounds 20] [--decodes 20000]` times, in a fresh process per
side and round (old tree first on `PYTHONPATH`, then this one, the order flipped every round), the decodes every
call and every received row pays: a `sync_event` row (`TableSchema.decode` on the client), the arguments of a
100-event `append_sync_events` call (`decode_prefix` on the host), the same row through the pure-Python codec, and
one small `Vec<Vec<()>>` value (a type that keeps the budget). Prints ns per decode, medians, as JSON and a table.

Make the old tree with `git archive <commit> src | tar -x -C /tmp/old` and build its C code in place (its `_bsatn.c`
differs): `python -c "import hatch_build, pathlib; hatch_build.compile_one(pathlib.Path(
'/tmp/old/src/autopilot_sync/spacetime/_bsatn.c'))"`.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.ab import report_old_against_new, run_worker, with_pythonpath


def _per_decode_ns(decode: Callable[[], Any], count: int) -> float:
    """The best of three batches of `count` decodes, in ns per decode (the batch least disturbed by the others)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter_ns()
        for _ in range(count):
            decode()
        best = min(best, (time.perf_counter_ns() - start) / count)
    return best


def worker(decodes: int) -> dict[str, float]:
    """One side's numbers, in this process (whichever tree is on `PYTHONPATH`)."""
    from autopilot_sync.module.schema import SYNC_EVENT_INPUT, sync_event
    from autopilot_sync.spacetime import algebraic as at
    from autopilot_sync.spacetime import bsatn
    from autopilot_sync.spacetime.values import Timestamp

    row_type = sync_event.row_type
    row_codec, python_row = bsatn.codec(row_type), bsatn.python_codec(row_type)
    row = row_codec.decode(
        row_codec.encode(tuple(_sample(element.type, i) for i, element in enumerate(row_type.elements)))
    )
    row_bytes = row_codec.encode(row)
    event = ("stream-1", "key-000001", "test", '{"n":1}', "h" * 64, 7, Timestamp(1_700_000_000_000_000))
    args_codec = bsatn.codec(at.product(("batch", at.array(SYNC_EVENT_INPUT))))
    args_bytes = args_codec.encode(([event] * 100,))
    units_codec = bsatn.codec(at.product(("g", at.array(at.array(at.UNIT)))))
    units_bytes = struct.pack("<5I", 4, 1, 2, 3, 4)
    return {
        "sync_event row, ns": _per_decode_ns(lambda: row_codec.decode(row_bytes), decodes),
        "100-event call args, ns": _per_decode_ns(lambda: args_codec.decode_prefix(args_bytes, 0), decodes // 50),
        "sync_event row, Python codec, ns": _per_decode_ns(lambda: python_row.decode(row_bytes), decodes // 4),
        "Vec<Vec<()>> of 10 units, ns": _per_decode_ns(lambda: units_codec.decode(units_bytes), decodes // 4),
    }


def _sample(ty: Any, index: int) -> Any:
    """A plausible value of one `sync_event` column."""
    from autopilot_sync.spacetime import algebraic as at
    from autopilot_sync.spacetime.values import Timestamp

    if ty == at.STRING:
        return f"value-{index}-" + "x" * 24
    if ty == at.TIMESTAMP:
        return Timestamp(1_700_000_000_000_000 + index)
    if isinstance(ty, at.Primitive):
        return index
    raise ValueError(f"no sample for {ty!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", help="the old tree's src directory")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--decodes", type=int, default=20_000)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.decodes)))
        return
    if not args.old:
        parser.error("--old is required")
    argv = ["-m", "bench.codec_budget_ab", "--worker", "--decodes", str(args.decodes)]

    def side(src: str | None) -> dict[str, float]:
        import os

        return run_worker(argv, with_pythonpath(dict(os.environ), src), f"worker on {src or 'this tree'}")

    report_old_against_new(args.old, args.rounds, side)


if __name__ == "__main__":
    sys.exit(main())
