"""A host's start on a large store (bench row g's data directory): wall time to `ready`, CPU and RSS at that moment.

Usage: `python -m bench.large_start --store DIR [--tree NAME=SRC_DIR ...] [--rounds 3]`. DIR is a host data
directory holding the sync module's history (row g's fill, kept: e.g. 1,000,000 events). Each variant gets its own
copy of DIR once (under `--scratch`), then every round starts one host per variant on its copy, interleaved (A, B,
B, A …), with snapshots off so a start never writes one (each start adds only its own start-hook commit to the log).
`this` is the checkout running the script; `NAME=SRC_DIR` runs with SRC_DIR first on `PYTHONPATH` (an exported
older tree). `--convert` rewrites each copy's newest snapshot with the variant's own `write_snapshot` first, so a
variant that changed the snapshot format starts on its own format (the rows are the same). `--store-for NAME=DIR`
starts variant NAME on DIR instead (a store as that variant's snapshot rules leave the same history, e.g. one built
by `bench/incsnap_store.py`). Prints medians of wall
seconds, host CPU seconds (user+system from /proc) and RSS at the ready line, with the load average.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from bench.ab import interleaved, with_pythonpath
from bench.startup import host_env, until_ready

READY_TIMEOUT_S = 600.0
QUIET = {
    "AUTOPILOT_SYNC_HOST_SNAPSHOT_EVERY_COMMITS": str(10**9),
    "AUTOPILOT_SYNC_HOST_SNAPSHOT_EVERY_BYTES": str(2**50),
}
CONVERT = """
import sys
from pathlib import Path
from autopilot_sync.host.snapshot import read_snapshot, write_snapshot
directory = Path(sys.argv[1]) / "snapshots"
paths = sorted(directory.glob("*.snap"))
for old in paths[:-1]:
    old.unlink()
snapshot = read_snapshot(paths[-1])
paths[-1].unlink()
write_snapshot(directory, snapshot)
"""


def _env(data_dir: Path, src: str | None) -> dict[str, str]:
    return {**host_env(data_dir, src), **QUIET}


def start(data_dir: Path, src: str | None) -> tuple[float, float, float]:
    """(wall seconds to ready, CPU seconds at ready, RSS bytes at ready) of one host start on `data_dir`."""
    return until_ready(_env(data_dir, src), READY_TIMEOUT_S)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, required=True, help="a host data directory with history")
    parser.add_argument("--tree", action="append", default=[], help="NAME=SRC_DIR: a variant run from SRC_DIR")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/bench-large-start"))
    parser.add_argument("--convert", action="store_true", help="rewrite each copy's snapshot in its variant's format")
    parser.add_argument("--store-for", action="append", default=[], help="NAME=DIR: variant NAME starts on DIR")
    args = parser.parse_args()
    variants: list[tuple[str, str | None]] = [("this", None)]
    variants += [(name, src) for name, _, src in (tree.partition("=") for tree in args.tree)]
    copies: dict[str, Path] = {}
    stores = {name: Path(store) for name, _, store in (item.partition("=") for item in args.store_for)}
    for name, src in variants:
        copy = copies[name] = args.scratch / name
        if not copy.exists():
            shutil.copytree(stores.get(name, args.store), copy)
            if args.convert and name not in stores:
                env = with_pythonpath({**os.environ}, src)
                subprocess.run([sys.executable, "-c", CONVERT, str(copy)], check=True, env=env)
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _ in variants}
    for _, (name, src) in interleaved(variants, args.rounds):
        results[name].append(start(copies[name], src))
        print(f"  {name}: wall {results[name][-1][0]:.2f} s, cpu {results[name][-1][1]:.2f} s", file=sys.stderr)
    print(f"host start on {args.store} ({args.rounds} rounds, interleaved), load average {os.getloadavg()}")
    for name, runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        rss = statistics.median(r[2] for r in runs)
        print(
            f"{name}: wall {wall:.2f} s, CPU {cpu:.2f} s, RSS {rss / 2**20:.0f} MiB at ready (CPU each: "
            + ", ".join(f"{r[1]:.2f}" for r in runs)
            + ")"
        )


if __name__ == "__main__":
    main()
