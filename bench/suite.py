"""The comparative benchmark: every workload on our system and on each peer, pair by pair, in one run.

Rounds are interleaved (ours, nats, nats-always, redis, ours, ...) so slow drift on a shared machine hits every
system alike; the table quotes the median of the rounds and the ratio ours/peer of those medians, oriented so that
a ratio above 1 means we are better. Results go to stdout as Markdown and to `<out>/results.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from autopilot_sync.contract.canonical import canonical_json
from bench import floor
from bench.ours import DURABILITY as OURS_DURABILITY
from bench.ours import Ours
from bench.peers.common import PeerUnavailableError
from bench.stats import median

OURS = "ours"
#: NATS 2.15 as most users run it (JetStream's default `sync_interval`: fsync on a timer, not before the ack)
NATS = "nats"
#: NATS 2.15 with `sync_interval: always`: fsync before every ack, the durability ours has
NATS_ALWAYS = "nats-always"
REDIS = "redis"
PEERS = (NATS, NATS_ALWAYS, REDIS)


def kind_of(system: str) -> str:
    """Which implementation drives `system`: both NATS configurations share the NATS workload code."""
    return NATS if system in (NATS, NATS_ALWAYS) else system


#: Workload keys in run order (memory first, on a host no other workload has touched yet).
WORKLOADS = ("e", "a", "b", "c", "d", "f", "g", "h", "i")
MODULES = {
    "g": "bench.workloads.store",
    "h": "bench.workloads.fanin",
    "a": "bench.workloads.publish",
    "b": "bench.workloads.latency",
    "c": "bench.workloads.resume",
    "d": "bench.workloads.storm",
    "e": "bench.workloads.memory",
    "f": "bench.workloads.recovery",
    "i": "bench.workloads.typescript",
}
PAD = "x" * 200


@dataclass(frozen=True)
class Metric:
    """One number a workload produces for each system."""

    workload: str
    name: str
    unit: str
    higher_is_better: bool
    #: the issue's goal for us, as (ratio or absolute) text, shown in the table
    goal: str = ""
    #: `(peer, compare)` for a ratio goal or None, and an absolute check; both see ours' median
    goal_check: Callable[[dict[str, float]], bool] | None = None


@dataclass
class Sizes:
    """How big each workload is; `--quick` shrinks everything but the 10,000-event resume (and drops the
    1,000-subscriber latency row) so that it stays about a minute on an idle 2-core machine."""

    publish_batched: int = 20_000
    publish_unbatched: int = 2_000
    batch: int = 100
    latency_rate: float = 20.0
    latency_seconds: float = 10.0
    latency_subscribers: tuple[int, ...] = (1, 100, 1000)
    latency_probes: int = 5
    resume_events: int = 10_000
    storm_clients: tuple[int, ...] = (500, 2000)
    idle_connections: int = 10_000
    recovery_commits: int = 100_000
    store_events: int = 1_000_000
    store_streams: int = 100
    fanin_streams: int = 1000
    fanin_rate: float = 10.0
    fanin_seconds: float = 10.0
    fanin_connections: int = 100
    rounds: int = 3

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            publish_batched=5_000,
            publish_unbatched=500,
            latency_seconds=3.0,
            latency_subscribers=(1, 100),
            storm_clients=(100,),
            idle_connections=200,
            recovery_commits=10_000,
            store_events=10_000,
            store_streams=20,
            fanin_streams=100,
            fanin_seconds=2.0,
            fanin_connections=10,
            rounds=1,
        )


@dataclass
class Context:
    """What workloads share: sizes, scratch space, the running systems, unique names."""

    root: Path
    sizes: Sizes
    ours: Ours
    peers: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    #: the system a workload is measuring right now (set by `run_workload`)
    system: str = OURS
    _counter: int = 0

    def peer(self) -> Any:
        """The running peer being measured now (`NatsPeer` or `RedisPeer`)."""
        return self.peers[self.system]

    def systems(self) -> list[str]:
        return [OURS, *self.peers]

    def name(self, prefix: str) -> str:
        """A fresh stream name (letters, digits and '-' only, valid for all three systems)."""
        self._counter += 1
        return f"{prefix}{self._counter}"


def client_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop the benchmark's client runs on: the services' (`lifecycle.event_loop_factory`, uvloop).

    An old tree on `PYTHONPATH` (the A/B benchmarks' `--old`) that predates it gets asyncio's loop, as it ran then.
    """
    try:
        from autopilot_sync.lifecycle import event_loop_factory
    except ImportError:
        return None
    return event_loop_factory()


def payload(n: int, sent_ns: int = 0) -> dict[str, Any]:
    """The event payload every system carries: ~250 bytes of canonical JSON."""
    return {"n": n, "pad": PAD, "t": sent_ns}


def payload_bytes(n: int, sent_ns: int = 0) -> bytes:
    """The same payload as the bytes peers store."""
    return canonical_json(payload(n, sent_ns)).encode()


@dataclass
class Row:
    """One metric: per-system samples (one per round) and medians."""

    metric: Metric
    samples: dict[str, list[float]] = field(default_factory=dict)

    def median(self, system: str) -> float:
        return median(self.samples.get(system, []))

    def ratio(self, peer: str) -> float:
        """How many times better we are than `peer` (>1 better, <1 behind)."""
        ours, theirs = self.median(OURS), self.median(peer)
        if not ours or not theirs or ours != ours or theirs != theirs:
            return float("nan")
        return ours / theirs if self.metric.higher_is_better else theirs / ours

    def spread(self, system: str) -> float:
        """(max - min) / median of the rounds: how noisy this number was."""
        values = self.samples.get(system, [])
        mid = median(values)
        return (max(values) - min(values)) / mid if len(values) > 1 and mid else 0.0


Measure = Callable[[Context, str, int], Awaitable[dict[str, float]]]


def load(key: str) -> ModuleType:
    """The workload module for a key."""
    return importlib.import_module(MODULES[key])


async def run_workload(ctx: Context, key: str) -> list[Row]:
    """All rounds of one workload on every system, interleaved."""
    module = load(key)
    metrics: list[Metric] = module.metrics(ctx)
    rows = {metric.name: Row(metric) for metric in metrics}
    measure: Measure = module.measure
    for round_no in range(ctx.sizes.rounds):
        for system in ctx.systems():
            started = time.monotonic()
            ctx.system = system
            # This process's own full collections walked every object it ever built (~60,000 after the imports),
            # pausing all its connections for 35-130 ms mid-round on a loaded machine: row (h) measured the bench.
            # Frozen, a full collection walks only what this round builds ("Round 4 — stall"); unfrozen after, so
            # what the round leaves (and a caller's own objects, as in the tests) is collected as usual again.
            gc.collect()
            gc.freeze()
            try:
                values = await measure(ctx, system, round_no)
            except Exception as exc:
                print(f"  ! {key} on {system} round {round_no} failed: {exc!r}", file=sys.stderr)
                continue
            finally:
                gc.unfreeze()
            for name, value in values.items():
                rows[name].samples.setdefault(system, []).append(value)
            print(f"  {key} {system} round {round_no}: {_brief(values)} ({time.monotonic() - started:.1f}s)",
                  file=sys.stderr)  # fmt: skip
    return list(rows.values())


def _brief(values: dict[str, float]) -> str:
    return ", ".join(f"{name}={value:.4g}" for name, value in values.items())


def _fmt(value: float) -> str:
    if value != value:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _goal(row: Row) -> str:
    check = row.metric.goal_check
    if not row.metric.goal:
        return ""
    if check is None:
        return row.metric.goal
    values = {system: row.median(system) for system in row.samples}
    try:
        met = check(values)
    except (KeyError, ZeroDivisionError):
        return f"{row.metric.goal}: ?"
    return f"{row.metric.goal}: {'met' if met else '**behind**'}"


def table(rows: list[Row], peers: list[str]) -> str:
    """The Markdown table: medians per system, ratio per peer, goal status."""
    head = ["workload", "metric", "unit", "ours", *peers, *(f"ours vs {p}" for p in peers), "goal"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * (1 + 2 * len(peers)) + "---|"]
    for row in rows:
        cells = [row.metric.workload, row.metric.name, row.metric.unit, _fmt(row.median(OURS))]
        cells += [_fmt(row.median(peer)) for peer in peers]
        cells += [f"{_fmt(row.ratio(peer))}x" if row.ratio(peer) == row.ratio(peer) else "-" for peer in peers]
        cells.append(_goal(row))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@contextlib.contextmanager
def _more_files() -> Iterator[None]:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    yield


def start_peers(root: Path, want: list[str]) -> dict[str, Any]:
    """Start each peer whose server binary is installed; a missing one is reported and left out."""
    peers: dict[str, Any] = {}
    for name in want:
        try:
            if kind_of(name) == NATS:
                from bench.peers.nats_peer import NatsPeer

                peer: Any = NatsPeer(root / name, sync_always=name == NATS_ALWAYS)
            else:
                from bench.peers.redis_peer import RedisPeer

                peer = RedisPeer(root / "redis")
            peer.start()
        except (PeerUnavailableError, ImportError) as exc:
            print(f"  ! peer {name} skipped: {exc}", file=sys.stderr)
            continue
        peers[name] = peer
    return peers


async def run_suite(
    root: Path, sizes: Sizes, only: list[str] | None = None, peers: tuple[str, ...] = PEERS
) -> dict[str, Any]:
    """Start everything under `root`, run the workloads, stop everything; returns the JSON-ready results."""
    keys = [key for key in WORKLOADS if not only or key in only]
    started = time.time()
    print("  measuring the floor (loopback RTT, fsync)", file=sys.stderr)
    the_floor = await asyncio.to_thread(floor.measure, root, sizes.rounds == 1)
    ours = Ours(root / "ours")
    ours.start()
    ctx = Context(root, sizes, ours, start_peers(root, list(peers)))
    rows: list[Row] = []
    try:
        warm = await ours.connect(producer=True)  # imports, schema, first token: not part of any number
        await warm.close()
        for key in keys:
            print(f"== workload {key}: {load(key).TITLE}", file=sys.stderr)
            rows += await run_workload(ctx, key)
    finally:
        for cleanup in ctx.state.get("cleanup", []):
            with contextlib.suppress(Exception):
                cleanup()
        for peer in ctx.peers.values():
            peer.stop()
        ours.stop()
    durability = {OURS: OURS_DURABILITY, **{name: peer.durability for name, peer in ctx.peers.items()}}
    return _results(rows, list(ctx.peers), sizes, the_floor, time.time() - started, durability)


def _load() -> str:
    """The 1/5/15-minute load averages: on a shared machine every number must say how busy it was."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _results(
    rows: list[Row],
    peers: list[str],
    sizes: Sizes,
    the_floor: floor.Floor,
    seconds: float,
    durability: dict[str, str],
) -> dict[str, Any]:
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_at_end": _load(),
        },
        "seconds": round(seconds, 1),
        "sizes": asdict(sizes),
        "floor": asdict(the_floor),
        "durability": durability,
        "peers": peers,
        "rows": [
            {
                "workload": row.metric.workload,
                "metric": row.metric.name,
                "unit": row.metric.unit,
                "higher_is_better": row.metric.higher_is_better,
                "samples": row.samples,
                "median": {system: row.median(system) for system in row.samples},
                "spread": {system: row.spread(system) for system in row.samples},
                "ratio_vs": {peer: row.ratio(peer) for peer in peers},
                "goal": _goal(row),
            }
            for row in rows
        ],
        "markdown": table(rows, peers),
    }


def render(results: dict[str, Any]) -> str:
    """The full Markdown report: table, floor, durability, noise."""
    fl = results["floor"]
    lines = [
        results["markdown"],
        "",
        f"Floor: loopback TCP round trip p50 {fl['rtt_p50_ms'] * 1000:.0f} µs (p99 {fl['rtt_p99_ms'] * 1000:.0f} µs); "
        f"4 KiB write + fsync p50 {fl['fsync_p50_ms']:.2f} ms (p99 {fl['fsync_p99_ms']:.2f} ms).",
        "",
        "Durability: " + "; ".join(f"{name}: {text}" for name, text in results["durability"].items()) + ".",
        "",
        f"Ratios: ours/peer for higher-is-better, peer/ours for lower-is-better (>1x = we are better). "
        f"Medians of {results['sizes']['rounds']} interleaved round(s); run took {results['seconds']:.0f}s on "
        f"{results['machine']['cpus']} CPUs, load average {results['machine']['load_average_at_end']} at the end.",
    ]
    noisy = [
        f"{row['workload']} {row['metric']} {system} ±{spread * 50:.0f}%"
        for row in results["rows"]
        for system, spread in row["spread"].items()
        if spread > 0.3
    ]
    if noisy:
        lines.append("Noisy (round spread > 30%): " + ", ".join(noisy) + ".")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`python -m bench [--quick] [--only a,b] [--out DIR] [--no-peers]`."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=(
            "Compare autopilot-sync with NATS JetStream 2.15 (default and sync_interval: always) and Redis Streams "
            "(appendfsync always) on the same workloads, pair by pair."
        ),
        epilog="Example: scripts/bench-setup.sh && .venv/bin/python -m bench --quick --out /tmp/bench",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, one round (a few minutes)")
    parser.add_argument(
        "--only", action="append", default=[], help="workload key(s) a-i, repeatable or comma-separated"
    )
    parser.add_argument("--out", type=Path, default=None, help="directory for results.json and results.md")
    parser.add_argument("--no-peers", action="store_true", help="measure our system only")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per workload (median is reported)")
    args = parser.parse_args(argv)
    only = [key.strip() for item in args.only for key in item.split(",") if key.strip()]
    unknown = [key for key in only if key not in MODULES]
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; choose from {', '.join(sorted(MODULES))}")
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.rounds:
        sizes.rounds = args.rounds
    peers = () if args.no_peers else PEERS
    # Every system's client runs on the loop our services run on (uvloop where installed): the runtime's producer
    # and the host do, and the peers' Python clients get the same loop (docs/performance.md, "Round 5 — sdkcall").
    with (
        _more_files(),
        tempfile.TemporaryDirectory(prefix="apsync-bench-") as scratch,  # same disk as /tmp
        asyncio.Runner(loop_factory=client_loop_factory()) as runner,
    ):
        results = runner.run(run_suite(Path(scratch), sizes, only or None, peers))
    report = render(results)
    print(report)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        (args.out / "results.md").write_text(report + "\n")
        print(f"\nwrote {args.out / 'results.json'}", file=sys.stderr)
    return 0
