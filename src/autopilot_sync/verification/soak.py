"""The soak run: scenarios back to back for a number of minutes, each from a seed derived from the master seed,
written to a results directory (JSON lines + a Markdown summary) so a long run can be read and replayed afterwards.

Layout of `--out DIR`: `events.jsonl` (phases and every fault, as they happen), `results.jsonl` (one line per
scenario run: verdict, violations, metrics, replay command), `history-<scenario>-<seed>.json` (the recorded history
of every failed run, re-checkable offline), `summary.md`.
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autopilot_sync.verification.powercut import PowerCutFault
from autopilot_sync.verification.scenarios.registry import SCENARIOS, run_scenario
from autopilot_sync.verification.scenarios.run import Journal, Profile, ScenarioResult, result_record, write_history


@dataclass
class SoakTotals:
    """What the summary reports, accumulated over every scenario run."""

    runs: int = 0
    failed: int = 0
    events: int = 0
    faults: int = 0
    reconnects: int = 0
    max_lag: int = 0
    recovery: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    per_scenario: dict[str, list[int]] = field(default_factory=dict)

    def add(self, result: ScenarioResult, journal_faults: int) -> None:
        """Fold one scenario's result in."""
        metrics: dict[str, Any] = result.metrics
        self.runs += 1
        self.events += int(metrics.get("events", 0))
        self.faults += journal_faults
        self.reconnects += int(metrics.get("reconnects", 0))
        self.max_lag = max(self.max_lag, int(metrics.get("max_lag", 0)))
        for label, seconds in dict(metrics.get("recovery", {})).items():
            self.recovery[label] = max(self.recovery.get(label, 0.0), float(seconds))
        counts = self.per_scenario.setdefault(result.name, [0, 0])
        counts[0] += 1
        if not result.ok:
            self.failed += 1
            counts[1] += 1
            self.failures.append(result.summary())


def scenario_seeds(master: int, names: Sequence[str]) -> random.Random:
    """The rng that picks each round's seeds: the whole soak replays from the master seed."""
    return random.Random(f"soak:{master}:{','.join(names)}")


async def soak(
    minutes: float,
    master_seed: int,
    out_dir: Path,
    names: Sequence[str],
    profile: Profile,
    power_cut: PowerCutFault | None = None,
) -> SoakTotals:
    """Run the scenarios in turn until `minutes` have passed (at least one round); write the results directory.

    With `power_cut` every run's host is under power-cut semantics (see `run_scenario`).
    """
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    totals = SoakTotals()
    picker = scenario_seeds(master_seed, names)
    deadline = time.monotonic() + minutes * 60
    started = time.time()
    with (out_dir / "events.jsonl").open("a") as events, (out_dir / "results.jsonl").open("a") as results:
        journal = Journal(events)
        journal.write(
            "soak", master_seed=master_seed, minutes=minutes, scenarios=list(names), power_cut=power_cut is not None
        )
        rounds = 0
        while rounds == 0 or time.monotonic() < deadline:
            rounds += 1
            for name in names:
                if rounds > 1 and time.monotonic() >= deadline:
                    break
                seed = picker.randrange(1, 2**31)
                faults_before = journal.faults
                with tempfile.TemporaryDirectory(prefix=f"chaos-{name}-") as root:
                    try:
                        result = await run_scenario(name, seed, Path(root), profile, journal, power_cut)
                    except Exception as exc:
                        totals.runs += 1
                        totals.failed += 1
                        totals.failures.append(f"scenario {name} seed {seed}: crashed: {exc!r}")
                        record = {"scenario": name, "seed": seed, "ok": False, "error": repr(exc)}
                        results.write(json.dumps(record) + "\n")
                        continue
                results.write(json.dumps(result_record(result), sort_keys=True, default=str) + "\n")
                results.flush()
                totals.add(result, journal.faults - faults_before)
                if not result.ok:
                    write_history(result, out_dir)
    summary = summary_markdown(totals, master_seed, minutes, time.time() - started, power_cut is not None)
    (out_dir / "summary.md").write_text(summary)
    return totals


def summary_markdown(
    totals: SoakTotals, master_seed: int, minutes: float, seconds: float, power_cut: bool = False
) -> str:
    """The human summary of a soak run."""
    flag = " --power-cut" if power_cut else ""
    lines = [
        "# Chaos soak summary",
        "",
        f"Master seed {master_seed} (replay: `autopilot-sync chaos --soak {minutes:g} --seed {master_seed}{flag}`), "
        f"ran {seconds / 60:.1f} minutes{' with the host under power-cut semantics' if power_cut else ''}.",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| scenario runs | {totals.runs} |",
        f"| failed runs | {totals.failed} |",
        f"| events acknowledged and checked | {totals.events} |",
        f"| faults injected | {totals.faults} |",
        f"| reconnects (proxied connections beyond the first) | {totals.reconnects} |",
        f"| max lag seen by a desktop (events) | {totals.max_lag} |",
        "",
        "| scenario | runs | failed |",
        "|---|---:|---:|",
        *(f"| {name} | {runs} | {failed} |" for name, (runs, failed) in sorted(totals.per_scenario.items())),
        "",
        "## Recovery times (worst, seconds)",
        "",
        "| what | seconds |",
        "|---|---:|",
        *(f"| {label} | {seconds:.3f} |" for label, seconds in sorted(totals.recovery.items())),
        "",
    ]
    if totals.failures:
        lines += ["## Failures", "", "```", *totals.failures, "```", ""]
    return "\n".join(lines)


__all__ = ["SCENARIOS", "SoakTotals", "soak", "summary_markdown"]
