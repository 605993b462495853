"""`autopilot-sync chaos`: run one scenario from a seed, every scenario once, or a soak for some minutes."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import tempfile
from pathlib import Path

import click

from autopilot_sync.verification.powercut import PowerCutFault
from autopilot_sync.verification.scenarios import (
    CI,
    SCENARIOS,
    SOAK,
    Journal,
    result_record,
    run_scenario,
    write_history,
)
from autopilot_sync.verification.soak import soak


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--scenario",
    "names",
    multiple=True,
    type=click.Choice(sorted(SCENARIOS)),
    help="Scenario to run (repeatable; default: all).",
)
@click.option("--seed", type=int, default=None, help="Seed to replay (printed by every run); random when absent.")
@click.option(
    "--soak", "minutes", type=float, default=None, help="Run the scenarios back to back for this many minutes."
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Results directory (JSON lines + summary.md).",
)
@click.option(
    "--profile",
    type=click.Choice(["ci", "soak"]),
    default=None,
    help="Sizes: ci (small) or soak (default with --soak).",
)
@click.option(
    "--power-cut",
    is_flag=True,
    help="Run the host under power-cut semantics: commit-log writes not yet fsynced are lost when it dies, so "
    "every host SIGKILL (host-sigkill) is a power cut, timed while bytes are unfsynced.",
)
def chaos(
    names: tuple[str, ...],
    seed: int | None,
    minutes: float | None,
    out_dir: Path | None,
    profile: str | None,
    power_cut: bool,
) -> None:
    """Run the verification scenarios against real processes behind fault proxies, and check the history.

    Every run prints its seed; the same seed replays the same keys, payloads and fault plan.

    \b
    Examples:
      autopilot-sync chaos --scenario churn               # one scenario, random seed (printed)
      autopilot-sync chaos --scenario churn --seed 1234   # replay it
      autopilot-sync chaos --scenario host-sigkill --power-cut   # host kills lose unfsynced log bytes
      autopilot-sync chaos --soak 30 --out ./chaos-results
    """
    chosen = list(names) or sorted(SCENARIOS)
    master = seed if seed is not None else secrets.randbelow(2**31)
    sizes = SOAK if (profile == "soak" or (profile is None and minutes is not None)) else CI
    fault = PowerCutFault() if power_cut else None
    if minutes is not None:
        target = out_dir or Path(f"chaos-results-{master}")
        click.echo(f"chaos soak: {minutes:g} minutes, master seed {master}, results in {target}")
        totals = asyncio.run(soak(minutes, master, target, chosen, sizes, fault))
        click.echo((target / "summary.md").read_text())
        sys.exit(1 if totals.failed else 0)
    failed = 0
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    for name in chosen:
        with tempfile.TemporaryDirectory(prefix=f"chaos-{name}-") as root:
            events = (out_dir / "events.jsonl").open("a") if out_dir is not None else None
            try:
                result = asyncio.run(run_scenario(name, master, Path(root), sizes, Journal(events), fault))
            finally:
                if events is not None:
                    events.close()
        click.echo(result.summary())
        if out_dir is not None:
            with (out_dir / "results.jsonl").open("a") as results:
                results.write(json.dumps(result_record(result), sort_keys=True, default=str) + "\n")
            if not result.ok:
                write_history(result, out_dir)
        failed += 0 if result.ok else 1
    sys.exit(1 if failed else 0)
