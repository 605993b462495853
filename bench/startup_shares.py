"""Where a host start's imports go: `-X importtime` of several starts, grouped into the shares docs/performance.md
quotes ("Round 6 — startup3").

Usage: `python -m bench.startup_shares --runs 5 [--tree SRC_DIR] [--modules]`. Each run starts `autopilot-sync
host` on a fresh data directory (the sync module, as `bench/startup.py` does) under `-X importtime` and kills it at
its ready line (not a graceful stop: what a stop imports would land after `ready`). Per module the median of its
self time over the runs is taken; each module's time goes to the nearest importer that names a share (aiohttp,
click, one of our packages, ...), so the standard library a package pulls in counts as that package's, and what no
share claims is the interpreter's own start. `--modules` also lists the costliest modules. Self times include
`-X importtime`'s own overhead: read the shares, and measure gains with `bench/startup.py` (CPU, interleaved).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

from bench.startup import host_env

#: Third-party packages and what they bring with them, as one share each (first match wins).
THIRD_PARTY = (
    (
        ("aiohttp", "attr", "yarl", "multidict", "propcache", "frozenlist", "aiosignal", "aiohappyeyeballs", "idna"),
        "aiohttp (with attrs, yarl, multidict and the stdlib it pulls in)",
    ),
    (("asyncio", "ssl", "uvloop", "concurrent"), "asyncio, ssl/OpenSSL, uvloop"),
    (("click",), "click (with inspect, uuid, ...)"),
    (("prometheus_client",), "prometheus_client (with http.server, wsgiref)"),
    (("cryptography",), "cryptography"),
    (("sqlglot",), "sqlglot"),
)
#: Our packages, as one share each (first prefix wins).
OURS = (
    ("autopilot_sync.spacetime", "ours: spacetime/"),
    ("autopilot_sync.host", "ours: host/"),
    (
        (
            "autopilot_sync.module",
            "autopilot_sync.bindings",
            "autopilot_sync.contract",
            "autopilot_sync.sync_bindings",
            "autopilot_sync.nostr",
        ),
        "ours: module, bindings, contract, nostr",
    ),
    ("autopilot_sync", "ours: the CLI, settings, auth/ and other"),
)
INTERPRETER = "the interpreter's own start and stdlib (site, encodings, typing, re, ...)"

Row = tuple[int, int, str]  # self microseconds, depth, module


def share_of(module: str) -> str | None:
    """The share a module names, or None when it is claimed by whoever imported it."""
    top = module.split(".")[0]
    for tops, share in THIRD_PARTY:
        if top in tops:
            return share
    for prefixes, share in OURS:
        if module.startswith(prefixes):
            return share
    return None


def one_start(src: str | None) -> list[Row]:
    """`-X importtime` rows of one host start, up to its ready line, in the order Python wrote them."""
    with tempfile.TemporaryDirectory(prefix="bench-shares-") as tmp:
        env = host_env(Path(tmp) / "host", src)
        command = [sys.executable, "-X", "importtime", "-m", "autopilot_sync", "host", "--log-level", "WARNING"]
        log = Path(tmp) / "importtime.txt"
        with log.open("w") as stderr:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
            assert process.stdout is not None
            try:
                ready = any(" ready: " in line for line in process.stdout)
            finally:
                process.kill()
                process.wait(timeout=30)
        if not ready:
            raise RuntimeError(f"host exited before ready:\n{log.read_text()[-2000:]}")
        rows: list[Row] = []
        for line in log.read_text().splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            self_us, _, name = line.removeprefix("import time:").split("|")
            rows.append((int(self_us), (len(name) - len(name.lstrip())) // 2, name.strip()))
        return rows


def attribute(rows: list[Row]) -> tuple[Counter[str], Counter[str]]:
    """Self time per share (each module's to its nearest importer naming a share) and per module."""
    shares: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    for i, (self_us, depth, module) in enumerate(rows):
        modules[module] += self_us
        share = share_of(module)
        if share is None:  # importtime writes a module before its importer, at a smaller depth
            level = depth
            for _, parent_depth, parent in rows[i + 1 :]:
                if parent_depth < level:
                    level = parent_depth
                    share = share_of(parent)
                    if share is not None:
                        break
        shares[share or INTERPRETER] += self_us
    return shares, modules


def medians(counters: list[Counter[str]]) -> dict[str, float]:
    """Median over the runs of each key (a run without it counts 0)."""
    values: defaultdict[str, list[int]] = defaultdict(list)
    for counter in counters:
        for key in {key for c in counters for key in c}:
            values[key].append(counter.get(key, 0))
    return {key: statistics.median(found) for key, found in values.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tree", help="SRC_DIR: run an exported tree instead of this checkout (byte-compile it)")
    parser.add_argument("--modules", action="store_true", help="also list the 25 costliest modules")
    args = parser.parse_args()
    runs = [attribute(one_start(args.tree)) for _ in range(args.runs)]
    shares = medians([shares for shares, _ in runs])
    total = sum(shares.values())
    print(f"host start imports, {args.runs} runs, median self times, load average {os.getloadavg()}")
    print("| share | ms | share |\n|---|---:|---:|")
    for share, micros in sorted(shares.items(), key=lambda item: -item[1]):
        print(f"| {share} | {micros / 1000:.0f} | {100 * micros / total:.0f}% |")
    print(f"| total (`-X importtime` self times) | {total / 1000:.0f} | |")
    if args.modules:
        for module, micros in sorted(medians([modules for _, modules in runs]).items(), key=lambda x: -x[1])[:25]:
            print(f"  {micros / 1000:7.1f} ms  {module}")


if __name__ == "__main__":
    main()
