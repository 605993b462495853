"""Every scenario by name (the one list the CLI, the soak run and the tests read), and `run_scenario` to play one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from autopilot_sync.verification.powercut import PowerCutFault
from autopilot_sync.verification.scenarios.churn import churn
from autopilot_sync.verification.scenarios.duplicate_delivery import duplicate_delivery
from autopilot_sync.verification.scenarios.end_to_end import end_to_end
from autopilot_sync.verification.scenarios.half_open import half_open_presence
from autopilot_sync.verification.scenarios.handshake import handshake
from autopilot_sync.verification.scenarios.host_sigkill import host_sigkill
from autopilot_sync.verification.scenarios.racing_duplicate import racing_duplicate
from autopilot_sync.verification.scenarios.reconnect_storm import reconnect_storm
from autopilot_sync.verification.scenarios.restore_drill import restore_drill
from autopilot_sync.verification.scenarios.run import CI, Journal, Profile, Run, ScenarioResult
from autopilot_sync.verification.scenarios.runtime_sigkill import runtime_sigkill
from autopilot_sync.verification.scenarios.stale_cursor import stale_cursor
from autopilot_sync.verification.scenarios.undurable_read import undurable_read


@dataclass(frozen=True, slots=True)
class Scenario:
    """One scenario: its CLI name, the function that plays it, and whether it is about the power cut (then it always
    runs under it, with its own writeback and fsync delay)."""

    name: str
    play: Callable[[Run], Awaitable[None]]
    power_cut: bool = False


REGISTRY: tuple[Scenario, ...] = (
    Scenario("handshake", handshake),
    Scenario("half-open", half_open_presence),
    Scenario("end-to-end", end_to_end),
    Scenario("churn", churn),
    Scenario("reconnect-storm", reconnect_storm),
    Scenario("stale-cursor", stale_cursor),
    Scenario("duplicate-delivery", duplicate_delivery),
    Scenario("host-sigkill", host_sigkill),
    Scenario("runtime-sigkill", runtime_sigkill),
    Scenario("racing-duplicate", racing_duplicate, power_cut=True),
    Scenario("undurable-read", undurable_read, power_cut=True),
    Scenario("restore-drill", restore_drill),
)

SCENARIOS: dict[str, Scenario] = {scenario.name: scenario for scenario in REGISTRY}
"""The registry by name."""


async def run_scenario(
    name: str,
    seed: int,
    root: Path,
    profile: Profile = CI,
    journal: Journal | None = None,
    power_cut: PowerCutFault | None = None,
) -> ScenarioResult:
    """Run one scenario from its seed in `root` and return the checked result (the stack is always stopped).

    With `power_cut` the host runs under power-cut semantics: its commit-log writes are lost unless fsynced when
    it dies (`powercut.py`), so every host SIGKILL is a power cut.
    """
    scenario = SCENARIOS[name]
    journal = journal or Journal()
    if power_cut is None and scenario.power_cut:
        power_cut = PowerCutFault()
    flag = " --power-cut" if power_cut is not None else ""
    print(
        f"chaos scenario={name} seed={seed}{' power-cut' if flag else ''} "
        f"(replay: autopilot-sync chaos --scenario {name} --seed {seed}{flag})",
        flush=True,
    )
    run = Run(name, seed, profile, root, journal, power_cut)
    run.note(
        "start",
        profile=vars(profile) if hasattr(profile, "__dict__") else str(profile),
        power_cut=asdict(power_cut) if power_cut is not None else None,
    )
    try:
        await scenario.play(run)
        return await run.finish()
    except BaseException:
        journal.write("error", scenario=name, seed=seed, tails=run.stack.tails())
        raise
    finally:
        await run.stack.stop()
