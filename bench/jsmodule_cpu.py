"""The host's own CPU per `append_sync_events` call of the sync module's TypeScript twin (issue 18, docs "(i)").

Usage: `.venv/bin/python -m bench.jsmodule_cpu [--calls 30] [--events 100] [--rounds 4] [--old <src dir> |
--old-commit <rev>] [--old-twin <module dir>]`

Each measurement is a fresh process: the twin built as `autopilot-sync build` does, hosted as a `JsModule` in a real
`HostEngine` (fsync off), 10 warm-up calls, then `--calls` calls of `--events` events; it prints wall time and the
host process's CPU time (`time.process_time`) and the runner's (its JavaScript, from /proc) per call. With `--old`
(another tree's `src`) or `--old-commit` (exported by `bench.ab.export_tree`), that tree runs on `PYTHONPATH` in turn
with this one, the order flipped every round (`bench.ab.interleaved`); medians per tree at the end (`bench.ab.table`).
`--old-twin` does the same for the twin's TypeScript (a `modules/autopilot-sync` folder of another tree, with its
`node_modules`); given alone, the old tree is this `src` with that twin. Numbers depend on the machine's load
(printed): a cost row, never a test (`tests/bench/test_ab_scripts.py` keeps it running).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.ab import REPO, Samples, export_tree, interleaved, table, with_pythonpath


async def _measure(calls: int, events: int, twin_dir: Path | None) -> dict[str, float]:
    from autopilot_sync.host.call_outcome import CallStatus
    from autopilot_sync.host.caller import Caller
    from autopilot_sync.host.engine import EngineConfig, HostEngine
    from autopilot_sync.host.js_module import JsModule
    from autopilot_sync.tsbuild.build import build_module
    from autopilot_sync.tsbuild.project import ModuleProject
    from bench import jsmodule_bench as jb
    from bench.proc_cpu import process_cpu_seconds

    scratch = Path(tempfile.mkdtemp(prefix="jsmodule-cpu-"))
    built = build_module(ModuleProject.open(twin_dir or jb.TWIN), scratch / "twin.js").out
    twin = JsModule(built)
    engine = HostEngine(twin, scratch / "data", "bench", EngineConfig(fsync=False, snapshot_every=10**9))
    await engine.start()
    named = await engine.call_reducer("set_trusted_issuer", (jb.ISSUER,), Caller(engine.owner_identity))
    assert named.status is CallStatus.COMMITTED, named.message
    try:
        seq = 1
        for _ in range(10):
            await engine.call_reducer("append_sync_events", (jb._batch("warm", seq, events),), jb.PUBLISHER)
            seq += events
        batches = [jb._batch("measured", 1 + i * events, events) for i in range(calls)]
        pid = twin.runner.pid or 0
        cpu0, wall0, runner0 = time.process_time(), time.perf_counter(), process_cpu_seconds(pid)
        for batch in batches:
            outcome = await engine.call_reducer("append_sync_events", (batch,), jb.PUBLISHER)
            if outcome.status is not CallStatus.COMMITTED:
                raise RuntimeError(f"append failed: {outcome}")
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        runner = process_cpu_seconds(pid) - runner0
    finally:
        await engine.stop()
        twin.close()
    return {"cpu_ms": cpu / calls * 1000, "wall_ms": wall / calls * 1000, "runner_ms": runner / calls * 1000}


def _run(src: str | None, twin: str | None, calls: int, events: int) -> dict[str, float]:
    """One measurement in a fresh process, `src` first on its `PYTHONPATH` (None: this tree)."""
    env = with_pythonpath(dict(os.environ), src)
    argv = [sys.executable, "-m", "bench.jsmodule_cpu", "--child", "--calls", str(calls), "--events", str(events)]
    if twin is not None:
        argv += ["--twin", twin]
    out = subprocess.run(argv, env=env, cwd=REPO, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--old", help="a src/ directory of another tree, run alternately with this one")
    parser.add_argument("--old-commit", help="a commit of this repository, exported as the old tree")
    parser.add_argument("--old-twin", help="another tree's modules/autopilot-sync, the old twin")
    parser.add_argument("--twin", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        twin_dir = Path(args.twin) if args.twin else None
        print(json.dumps(asyncio.run(_measure(args.calls, args.events, twin_dir))))
        return
    with tempfile.TemporaryDirectory(prefix="jsmodule-cpu-old-") as scratch:
        old = str(export_tree(args.old_commit, Path(scratch))) if args.old_commit else args.old
        trees: list[tuple[str, str | None, str | None]] = [("new", None, None)]
        if old is not None or args.old_twin is not None:
            trees.insert(0, ("old", old, args.old_twin))
        samples = Samples()
        print(f"load before: {os.getloadavg()[0]:.2f}")
        for round_no, (name, src, twin) in interleaved(trees, args.rounds):
            result = _run(src, twin, args.calls, args.events)
            samples.add(name, result)
            cpu, runner, wall = result["cpu_ms"], result["runner_ms"], result["wall_ms"]
            print(f"round {round_no + 1} {name}: host CPU {cpu:.1f} ms, runner CPU {runner:.1f} ms, wall {wall:.1f} ms")
    print(table(samples.medians()))


if __name__ == "__main__":
    main()
