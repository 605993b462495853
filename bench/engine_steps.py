"""CPU microseconds per step of a one-event call in the engine: where `bench.engine_calls`'s time goes, step by step.

`python -m bench.engine_steps [--calls 20000] [--batch 1]` runs `bench.engine_calls` once (the sync module in
process, fsync off, no sockets) with each step function below wrapped in place by a timer on the thread's CPU clock,
and prints each step's inclusive CPU per call and how often it ran per call. Why: a sampling profiler's shares of a
call made of ~100 steps of 1-7 µs each mostly measure where its samples happened to land (py-spy put 5.8% of the
engine on the log record's encode, which takes ~1.7 µs of ~120); a timer per step reads each step's own cost. The
wall clock (`perf_counter_ns`, no system call: the thread's CPU clock is one, ~1 µs a read, which distorted every
step around it) is read around each run, and each step reports the median of its runs, so the runs a neighbour
preempted do not count; a wrapper's own cost (measured at the start) is taken off each step once per wrapped step
inside it. Medians of nested steps do not add up; the unwrapped call's CPU (`engine_calls` without wrappers) is
printed first to compare. Nothing under `src/` knows this tool: it replaces
attributes of the imported modules for the length of the run (a reducer registered by its decorator is called
through the module's table, so its own function cannot be wrapped here: `PythonModule.call_reducer` stands for it).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import importlib
import os
import time
from collections.abc import Callable
from typing import Any

from bench.engine_calls import run

#: (module, attribute path) of each step timed: the engine's call path, the module's append, the commit.
STEPS: tuple[tuple[str, str], ...] = (
    ("autopilot_sync.host.engine", "HostEngine.start_call"),
    ("autopilot_sync.host.engine", "HostEngine._transact"),
    ("autopilot_sync.host.engine", "HostEngine._commit"),
    ("autopilot_sync.host.engine", "HostEngine._now"),
    ("autopilot_sync.host.engine", "encode_record"),
    ("autopilot_sync.host.engine", "CommittedTx"),
    ("autopilot_sync.host.engine", "CallOutcome"),
    ("autopilot_sync.host.engine", "HostReducerContext"),
    ("autopilot_sync.host.commitlog", "CommitLog.append"),
    ("autopilot_sync.host.commitlog", "CommitLog._start_flush"),
    ("autopilot_sync.host.durability", "DurableCommits.when_durable"),
    ("autopilot_sync.host.durability", "DurableCommits.written"),
    ("autopilot_sync.host.snapshot_scheduler", "SnapshotScheduler.after_commit"),
    ("autopilot_sync.host.scheduler", "ReducerScheduler.after_commit"),
    ("autopilot_sync.host.transaction", "Transaction.changes"),
    ("autopilot_sync.host.transaction", "TableHandle.insert"),
    ("autopilot_sync.host.transaction", "TableHandle.find"),
    ("autopilot_sync.host.transaction", "TableHandle.update"),
    ("autopilot_sync.host.hosted_module", "PythonModule.call_reducer"),
    ("autopilot_sync.module.reducers", "_append_one"),
    ("autopilot_sync.module.reducers", "canonicalize_and_hash"),
    ("autopilot_sync.module.reducers", "check_payload_depth"),
    ("autopilot_sync.module.reducers", "require_trusted_issuer"),
    ("autopilot_sync.module.reducers", "_Heads.__init__"),
    ("autopilot_sync.module.reducers", "_Heads.start"),
    ("autopilot_sync.module.reducers", "_Heads.write"),
    ("autopilot_sync.contract.stream_chain", "link_digest"),
)


class StepTimes:
    """Per step name, the nanoseconds of each run (less the wrappers run inside it), filled by the wrappers."""

    def __init__(self) -> None:
        self.runs: collections.defaultdict[str, list[float]] = collections.defaultdict(list)
        self.finished = 0  # wrapped steps finished so far: how many wrappers ran inside a step
        self.overhead = 0.0  # nanoseconds one wrapped step inside another adds to the outer one
        self.overhead = self._calibrate()

    def wrap(self, label: str, step: Callable[..., Any]) -> Callable[..., Any]:
        """`step` timed under `label` (a class is wrapped as a call of its constructor)."""
        clock, runs = time.perf_counter_ns, self.runs[label]

        def timed(*args: Any, **kwargs: Any) -> Any:
            inner = self.finished
            started = clock()
            try:
                return step(*args, **kwargs)
            finally:
                runs.append(clock() - started - (self.finished - inner) * self.overhead)
                self.finished += 1

        return timed

    def per_call(self, label: str, calls: int) -> tuple[float, float]:
        """(median µs of one run of the step, runs per call)."""
        runs = sorted(self.runs[label])
        return runs[len(runs) // 2] / 1000, len(runs) / calls

    def _calibrate(self, rounds: int = 5000, repeats: int = 9) -> float:
        """The least, over `repeats`, of what a wrapped no-op costs more than a bare one (the least: the runs a
        neighbour preempted read high, none reads low)."""
        noop = self.wrap("(no-op)", lambda: None)
        bare = lambda: None  # noqa: E731  (the same kind of callable as the wrapped one)
        costs = []
        for _ in range(repeats):
            started = time.perf_counter_ns()
            for _ in range(rounds):
                noop()
            wrapped = time.perf_counter_ns() - started
            started = time.perf_counter_ns()
            for _ in range(rounds):
                bare()
            costs.append((wrapped - (time.perf_counter_ns() - started)) / rounds)
        del self.runs["(no-op)"]
        return max(0.0, min(costs))


def install(times: StepTimes, steps: tuple[tuple[str, str], ...] = STEPS) -> list[tuple[Any, str, Any]]:
    """Wrap every step in place; returns what to restore (owner, attribute, original)."""
    restore = []
    for module_name, path in steps:
        owner: Any = importlib.import_module(module_name)
        *parents, attribute = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        original = owner.__dict__[attribute] if isinstance(owner, type) else getattr(owner, attribute)
        restore.append((owner, attribute, original))
        setattr(owner, attribute, times.wrap(path, original))
    return restore


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_steps", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=1, help="events per call")
    args = parser.parse_args(argv)
    (plain,) = asyncio.run(run(args.calls, 1, args.batch))
    times = StepTimes()
    restore = install(times)
    try:
        (wrapped,) = asyncio.run(run(args.calls, 1, args.batch))
    finally:
        for owner, attribute, original in reversed(restore):
            setattr(owner, attribute, original)
    calls = len(times.runs["HostEngine.start_call"]) or 1
    print(f"engine loop CPU per call: {plain:.1f} µs unwrapped, {wrapped:.1f} µs wrapped; load {os.getloadavg()}")
    print(f"  (a wrapped step inside another adds {times.overhead / 1000:.2f} µs to it: taken off)")
    rows = sorted(((label, *times.per_call(label, calls)) for label in times.runs), key=lambda row: -row[1] * row[2])
    for label, median_us, runs in rows:
        print(f"  {label:40s} {median_us:8.2f} µs a run (median)  x{runs:.1f} per call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
