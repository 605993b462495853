"""Host start-up on an empty store: wall time to the `ready` line and the host process's CPU time at that moment.

Usage: `python -m bench.startup --rounds 5 [--tree NAME=SRC_DIR ...]`. Each round starts one host per variant
(interleaved A, B, B, A …) on a fresh data directory with the sync module, reads the process's user+system CPU
from `/proc/<pid>/stat` when its ready line arrives, then stops it. A variant `NAME=SRC_DIR` runs with `SRC_DIR`
first on `PYTHONPATH` (e.g. an exported older tree, byte-compiled), so two versions compare in one run on the same
machine; `this` is the checkout running the script. CPU time is what to compare on a shared machine (wall time
includes waiting for a core); both are printed as medians with the load average. Every variant's tree is
byte-compiled first: with `PYTHONDONTWRITEBYTECODE` set (as on the helpers' machines) a tree that never was would
compile every module at every start, and the comparison would measure the compiler.

The host keeps start-up verdicts in its cache directory (`AUTOPILOT_SYNC_HOST_CACHE_DIR`, default
`~/.cache/autopilot-sync`), so after the first round a fresh data directory starts as on a machine where the host ran
before; `--cold` gives every start its own empty home directory instead (the first start on a new machine).

`--history DIR` starts each host on a copy of DIR (a host data directory, e.g. one holding 10,000 commits and no
snapshot, as bench row f's) with snapshots off, so the start replays the whole log: the restart-with-history path.

`--importtime FILE` instead writes `python -X importtime` of one host start to FILE (the start-up profile).
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autopilot_sync.devtools.processes import free_port
from autopilot_sync.settings.environment import service_environment
from autopilot_sync.settings.fields import ListenAddress
from autopilot_sync.settings.host import HostSettings
from bench.ab import interleaved, with_pythonpath
from bench.peers.common import rss_bytes
from bench.proc_cpu import process_cpu_seconds

READY_TIMEOUT_S = 60.0


def host_env(data_dir: Path, src: str | None) -> dict[str, str]:
    """The environment of a host on an empty `data_dir` running the sync module (`src` first on PYTHONPATH)."""
    fields = {
        "listen": ListenAddress("127.0.0.1", free_port()),
        "data_dir": data_dir,
        "module": "autopilot_sync.module",
        "database": "autopilot-sync",
        "trusted_issuers": ("http://127.0.0.1:9/",),
    }
    return with_pythonpath({**os.environ, **service_environment(HostSettings, fields), "PYTHONUNBUFFERED": "1"}, src)


def start_once(
    src: str | None, *, restart: bool = False, cold: bool = False, history: Path | None = None
) -> tuple[float, float]:
    """One host start on a fresh directory (with `restart`, on one an unmeasured start left behind; with `cold`, with
    an empty home directory, so an empty cache directory; with `history`, on a copy of that data directory):
    (wall seconds to ready, CPU seconds at ready)."""
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        if history is not None:
            shutil.copytree(history, Path(tmp) / "host")
        if restart:
            _start(src, Path(tmp), cold, history is not None)
        return _start(src, Path(tmp), cold, history is not None)


#: Snapshots off, so a start on a copied history replays its whole log (as bench row f's restart).
NO_SNAPSHOTS = {"AUTOPILOT_SYNC_HOST_SNAPSHOT_EVERY_COMMITS": str(10**9)}


def _start(src: str | None, tmp: Path, cold: bool = False, history: bool = False) -> tuple[float, float]:
    env = host_env(tmp / "host", src)
    if cold:
        env["HOME"] = str(tmp / "home")
    if history:
        env.update(NO_SNAPSHOTS)
    wall, cpu, _ = until_ready(env, READY_TIMEOUT_S)
    return wall, cpu


def until_ready(env: dict[str, str], timeout: float) -> tuple[float, float, float]:
    """Start a host with `env` and stop it at its ready line: (wall seconds to it, the process's CPU seconds and RSS
    bytes at that moment)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "autopilot_sync", "host", "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    try:
        for line in process.stdout:
            if " ready: " in line:
                wall = time.perf_counter() - started
                cpu = process_cpu_seconds(process.pid)
                rss = float(rss_bytes(process.pid))
                break
            if time.perf_counter() - started > timeout:
                raise RuntimeError("host not ready in time")
        else:
            raise RuntimeError(f"host exited before ready (code {process.wait()})")
    finally:
        process.terminate()
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
    return wall, cpu, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tree", action="append", default=[], help="NAME=SRC_DIR: a variant run from SRC_DIR")
    parser.add_argument("--restart", action="store_true", help="measure the second start on one data directory")
    parser.add_argument("--history", type=Path, help="start each host on a copy of this data directory")
    parser.add_argument("--cold", action="store_true", help="every start with an empty home (so cache) directory")
    parser.add_argument("--importtime", help="write `-X importtime` of one start to this file and exit")
    args = parser.parse_args()
    if args.importtime:
        with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
            env = host_env(Path(tmp) / "host", None)
            command = [sys.executable, "-X", "importtime", "-m", "autopilot_sync", "host", "--log-level", "WARNING"]
            with open(args.importtime, "w") as out:
                process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=out, text=True, env=env)
                assert process.stdout is not None
                for line in process.stdout:
                    if " ready: " in line:
                        break
                process.terminate()
                process.wait()
        return
    variants: list[tuple[str, str | None]] = [("this", None)]
    for tree in args.tree:
        name, _, src = tree.partition("=")
        variants.append((name, src))
    for _, src in variants:  # the checkout's own package, or the variant's tree
        compileall.compile_dir(src or str(Path(__file__).resolve().parents[1] / "src"), quiet=1)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in variants}
    for _, (name, src) in interleaved(variants, args.rounds):
        results[name].append(start_once(src, restart=args.restart, cold=args.cold, history=args.history))
    store = "a restart of an empty store" if args.restart else "an empty store"
    store = f"a copy of {args.history}" if args.history else store
    store += ", empty cache directory" if args.cold else ""
    print(f"host ready on {store}, {args.rounds} interleaved rounds, load average {os.getloadavg()}")
    for name, runs in results.items():
        walls = [wall for wall, _ in runs]
        cpus = [cpu for _, cpu in runs]
        print(
            f"  {name:>10}: wall p50 {statistics.median(walls):.3f} s, CPU p50 {statistics.median(cpus):.3f} s"
            f"  (CPU runs {' / '.join(f'{cpu:.2f}' for cpu in cpus)})"
        )


if __name__ == "__main__":
    main()
