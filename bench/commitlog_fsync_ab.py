"""Old against new: the commit log's own fsync per one-record flush, in a fresh process per side and round.

`python -m bench.commitlog_fsync_ab --old /tmp/old/src [--rounds 6] [--records 600] [--bytes 300]` runs, per side,
a worker that opens a `CommitLog` in a fresh directory under `--dir` (default: the system's temporary folder; it
must be the disk the host uses, not a tmpfs) and appends `--records` records of `--bytes` each, waiting until each
is durable before the next (the unbatched row's shape: one call in flight), and reports the median and p99 of the
log's `on_fsync` times and the records per second. The sides alternate with the order flipped every round.

Why: the record's fsync is most of a one-event durable call's wall time, and whether it also commits the file's
growth (appending) or only data blocks (records over zeros written ahead) is what "Round 8 — prealloc" changed
(docs/performance.md); the host-level rows mix it with everything else the call does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.ab import report_old_against_new, run_worker, with_pythonpath


async def measure(directory: Path, records: int, size: int) -> dict[str, float]:
    """One side's numbers: the log's fsync p50/p99 (µs) and records per second, each record waited for."""
    from autopilot_sync.host.commitlog import CommitLog  # the tree on PYTHONPATH: old or new

    log = CommitLog(directory)
    log.recover(0)
    log.open_segment(1)
    seconds: list[float] = []
    log.on_fsync = seconds.append
    await asyncio.sleep(0.05)  # as a host's first call after start: the first zeros ahead are written meanwhile
    payload = b"e" * size
    started = time.perf_counter()
    for _ in range(records):
        await log.wait_durable(log.append(payload))
    elapsed = time.perf_counter() - started
    log.close()
    seconds.sort()
    return {
        "fsync_p50_us": seconds[len(seconds) // 2] * 1e6,
        "fsync_p99_us": seconds[int(len(seconds) * 0.99)] * 1e6,
        "records_per_s": records / elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.commitlog_fsync_ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", help="the old tree's src folder")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--records", type=int, default=600)
    parser.add_argument("--bytes", type=int, default=300)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(asyncio.run(measure(args.worker, args.records, args.bytes))))
        return 0
    if not args.old:
        parser.error("--old is required")

    def side(src: str | None) -> dict[str, float]:
        with tempfile.TemporaryDirectory(prefix="apsync-fsync-ab-", dir=args.dir) as scratch:
            argv = ["-m", "bench.commitlog_fsync_ab", "--worker", scratch, "--records", str(args.records)]
            argv += ["--bytes", str(args.bytes)]
            return run_worker(argv, with_pythonpath(dict(os.environ), src), "commit-log fsync worker")

    report_old_against_new(args.old, args.rounds, side)
    return 0


if __name__ == "__main__":
    sys.exit(main())
