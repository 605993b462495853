"""The host's own CPU per `append_sync_events` call of the sync module's TypeScript twin (issue 18, docs "(i)").

Usage: `.venv/bin/python bench/jsmodule_cpu.py [--calls 30] [--events 100] [--rounds 4] [--old <src dir>]
[--old-twin <module dir>]`

Each measurement is a fresh process: the twin built as `autopilot-sync build` does, hosted as a `JsModule` in a real
`HostEngine` (fsync off), 10 warm-up calls, then `--calls` calls of `--events` events; it prints wall time and the
host process's CPU time (`time.process_time`) and the runner's (its JavaScript, from /proc) per call. With `--old`, a
tree exported from another commit (`git archive <rev> src | tar -x -C <dir>`, then `--old <dir>/src`) runs on
`PYTHONPATH` alternately with this one, old first in odd rounds and new first in even ones; medians per tree at the
end. `--old-twin` does the same for the twin's TypeScript (a `modules/autopilot-sync` folder of another tree, with
its `node_modules`); given alone, the old tree is this `src` with that twin. Numbers depend on the machine's load
(printed): a cost row, never a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


async def _measure(calls: int, events: int, twin_dir: Path | None) -> dict[str, float]:
    sys.path.insert(0, str(HERE))
    import jsmodule_bench as jb  # bench/ is on sys.path only here
    from proc_cpu import process_cpu_seconds

    from autopilot_sync.host.call_outcome import CallStatus
    from autopilot_sync.host.caller import Caller
    from autopilot_sync.host.engine import EngineConfig, HostEngine
    from autopilot_sync.host.js_module import JsModule
    from autopilot_sync.tsbuild.build import build_module
    from autopilot_sync.tsbuild.project import ModuleProject

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
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    argv = [sys.executable, __file__, "--child", "--calls", str(calls), "--events", str(events)]
    if twin is not None:
        argv += ["--twin", twin]
    out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--old", help="a src/ directory of another tree, run alternately with this one")
    parser.add_argument("--old-twin", help="another tree's modules/autopilot-sync, the old twin")
    parser.add_argument("--twin", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        twin_dir = Path(args.twin) if args.twin else None
        print(json.dumps(asyncio.run(_measure(args.calls, args.events, twin_dir))))
        return
    trees: list[tuple[str, str | None, str | None]] = [("new", None, None)]
    if args.old is not None or args.old_twin is not None:
        trees.insert(0, ("old", args.old, args.old_twin))
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in trees}
    print(f"load before: {os.getloadavg()[0]:.2f}")
    for round_ in range(args.rounds):
        for name, src, twin in trees if round_ % 2 == 0 else trees[::-1]:
            result = _run(src, twin, args.calls, args.events)
            results[name].append(result)
            cpu, runner, wall = result["cpu_ms"], result["runner_ms"], result["wall_ms"]
            print(f"round {round_ + 1} {name}: host CPU {cpu:.1f} ms, runner CPU {runner:.1f} ms, wall {wall:.1f} ms")
    print(f"load after: {os.getloadavg()[0]:.2f}")
    print("| tree | host CPU per call (median ms) | runner CPU per call | wall per call |\n|---|---:|---:|---:|")
    for name, rows in results.items():
        cpu = statistics.median(r["cpu_ms"] for r in rows)
        wall = statistics.median(r["wall_ms"] for r in rows)
        runner = statistics.median(r["runner_ms"] for r in rows)
        print(f"| {name} | {cpu:.1f} | {runner:.1f} | {wall:.1f} |")


if __name__ == "__main__":
    main()
