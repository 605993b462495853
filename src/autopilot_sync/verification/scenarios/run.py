"""One scenario's world (`Run`): its stack, seeded rng, recorder, producer, bounds and the checked result.

Every scenario ends the same way (`Run.finish`): the faults are lifted, every desktop must catch up, presence must
return to the truth, the checker must find nothing lost, duplicated, reordered or altered, and the guards must find
no legacy route and no component running inside the verifying process. What a seed fixes: the keys, the payloads,
the fault plan (which proxy, which toxic, when, how long) and every jitter draw; what it cannot fix is how the OS
schedules the processes, so a replay reproduces the same run, not the same interleaving to the microsecond.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from autopilot_sync.client import TokenGrant
from autopilot_sync.control.client import fetch_session_token
from autopilot_sync.verification.checker import CheckReport, check_history, check_presence
from autopilot_sync.verification.guards import GuardViolation, load_forbidden, process_violations, route_violations
from autopilot_sync.verification.history import History, HistoryRecorder, PresenceCheck, history_to_json
from autopilot_sync.verification.powercut import PowerCutFault
from autopilot_sync.verification.proxy import FaultRecord
from autopilot_sync.verification.stack import HOST_IDLE_SECONDS, ChaosStack, seeded_key, wait_until
from autopilot_sync.verification.workload import Producer

#: Presence after an abrupt close the host can see (TCP RST through the proxy, SIGKILL: the kernel sends FIN/RST):
#: the host's read fails at once and `client_disconnected` commits (one fsync). 5 s leaves room for a loaded CI box.
ABRUPT_PRESENCE_BOUND = 5.0
#: Presence after a half-open link (no FIN, no RST: data just stops): the host notices only through its idle
#: timeout — the suite's host pings every HOST_PING_SECONDS and closes a socket silent for HOST_IDLE_SECONDS
#: (`AUTOPILOT_SYNC_HOST_IDLE_TIMEOUT_SECONDS`), plus a 1 s close handshake timeout and 5 s of slack for a loaded box.
HALF_OPEN_PRESENCE_BOUND = HOST_IDLE_SECONDS + 1.0 + 5.0
#: Most seconds a probe reducer call may take while the reconnect storm hits the host (measured from the verifying
#: process, which also runs the storm's clients on the same two cores).
PROBE_BOUND = 5.0
CATCH_UP_BOUND = 90.0


@dataclass(frozen=True, slots=True)
class Profile:
    """Sizes of one run: the CI profile keeps the whole suite within minutes on two cores."""

    streams: int = 20
    events_per_stream: int = 20
    batch_size: int = 5
    desktops: int = 2
    storm_clients: int = 500
    storm_keys: int = 5
    churn_seconds: float = 6.0


CI = Profile()
SOAK = Profile(streams=30, events_per_stream=100, batch_size=10, desktops=3, storm_clients=600, churn_seconds=30.0)


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    """The outcome of one scenario run, with the numbers the soak summary reports."""

    name: str
    seed: int
    report: CheckReport
    guards: tuple[GuardViolation, ...]
    problems: tuple[str, ...]
    metrics: dict[str, Any]
    history: History

    @property
    def ok(self) -> bool:
        """True when the checker, the guards and the scenario's own bounds all passed."""
        return self.report.ok and not self.guards and not self.problems

    def summary(self) -> str:
        """Text for logs and assertion messages (starts with the replay command)."""
        lines = [f"scenario {self.name} seed {self.seed}: {'OK' if self.ok else 'FAILED'} ({replay_hint(self)})"]
        lines.append(self.report.summary())
        lines += [f"  guard {g}" for g in self.guards]
        lines += [f"  problem: {p}" for p in self.problems]
        return "\n".join(lines)


def replay_hint(result: ScenarioResult) -> str:
    """The command that replays a scenario from its seed."""
    flag = " --power-cut" if result.metrics.get("power_cut") else ""
    return f"replay: autopilot-sync chaos --scenario {result.name} --seed {result.seed}{flag}"


class Journal:
    """JSON lines of everything that happened (phases, faults, results); echo to stdout optional."""

    def __init__(self, out: TextIO | None = None, echo: bool = False) -> None:
        self.out = out
        self.echo = echo
        self.faults = 0

    def write(self, kind: str, **fields: Any) -> None:
        line = json.dumps({"t": round(time.time(), 3), "type": kind, **fields}, sort_keys=True, default=str)
        if self.out is not None:
            self.out.write(line + "\n")
            self.out.flush()
        if self.echo:
            print(line, flush=True)

    def fault(self, scenario: str, record: FaultRecord) -> None:
        self.faults += 1
        self.write("fault", scenario=scenario, proxy=record.proxy, action=record.action, detail=record.detail)


@dataclass
class Run:
    """One scenario's world: its stack, seeded rng, recorder, producer and measurements."""

    name: str
    seed: int
    profile: Profile
    root: Path
    journal: Journal
    power_cut: PowerCutFault | None = None
    rng: random.Random = field(init=False)
    recorder: HistoryRecorder = field(default_factory=HistoryRecorder)
    stack: ChaosStack = field(init=False)
    producer: Producer = field(init=False)
    problems: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    recovery: dict[str, float] = field(default_factory=dict)
    extra_presence: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.stack = ChaosStack(
            self.root,
            self.seed,
            on_fault=lambda record: self.journal.fault(self.name, record),
            power_cut=self.power_cut,
        )
        run_ids = [f"chaos-{self.seed % 100000}-{i:02d}" for i in range(self.profile.streams)]
        self.producer = Producer(
            self.stack.runtime_url,
            self.recorder,
            random.Random(f"{self.seed}:payloads"),
            run_ids,
            self.stack.producer_socket,
        )

    def note(self, phase: str, **fields: Any) -> None:
        """Journal a phase of the scenario."""
        self.journal.write("phase", scenario=self.name, seed=self.seed, phase=phase, **fields)

    # ----- waiting for the truth -----

    def acked_heads(self) -> dict[str, int]:
        """Newest acknowledged seq per stream."""
        heads: dict[str, int] = {}
        for ack in self.recorder.acks:
            heads[ack.stream_id] = max(heads.get(ack.stream_id, 0), ack.seq)
        return heads

    async def desktops_caught_up(self, within: float = CATCH_UP_BOUND) -> float:
        """Wait until every live desktop applied every acknowledged event; records the worst lag it saw."""
        heads = self.acked_heads()

        def done() -> bool:
            for desktop in self.stack.desktops:
                if not desktop.alive:
                    continue
                for stream_id, head in heads.items():
                    if desktop.stream_state(stream_id).get("applied", -1) != head:
                        return False
            return True

        try:
            return await wait_until("every desktop to apply every acknowledged event", done, within)
        except TimeoutError as exc:
            late = {
                d.name: {
                    s: d.stream_state(s).get("applied")
                    for s, h in heads.items()
                    if d.stream_state(s).get("applied") != h
                }
                for d in self.stack.desktops
                if d.alive
            }
            self.problems.append(f"{exc}: behind: {json.dumps(late)[:800]}")
            return within

    def expected_presence(self) -> dict[str, int]:
        """Live connections per Nostr key as the scenario knows them."""
        expected: dict[str, int] = dict(self.extra_presence)
        if self.stack.runtime is not None and self.stack.runtime.process.poll() is None:
            key = self.stack.producer_key.public_key().hex
            expected[key] = expected.get(key, 0) + 1
        for desktop in self.stack.desktops:
            if desktop.alive:
                expected[desktop.pubkey_hex] = expected.get(desktop.pubkey_hex, 0) + 1
        return expected

    async def presence_converges(self, label: str, within: float, expected: dict[str, int] | None = None) -> float:
        """Poll `active_connection` until it equals the truth; the last observation goes into the history."""
        truth = expected if expected is not None else self.expected_presence()
        started = time.monotonic()
        while True:
            try:
                observed = await self.stack.presence()
            except Exception as exc:
                observed = ()
                self.note("presence read failed", error=repr(exc))
            check = PresenceCheck(label, observed, truth)
            elapsed = time.monotonic() - started
            if not check_presence(check) or elapsed > within:
                self.recorder.observe_presence(check)
                self.recovery[f"presence: {label}"] = round(elapsed, 3)
                self.note("presence", label=label, seconds=round(elapsed, 3), rows=len(observed))
                return elapsed
            await asyncio.sleep(0.1)

    # ----- the end of every scenario -----

    async def finish(self) -> ScenarioResult:
        """Lift faults, wait for convergence, collect histories, run the checker and the guards."""
        for proxy in self.stack.proxies.values():
            if proxy.toxics:
                proxy.clear()
        self.recovery["catch-up"] = round(await self.desktops_caught_up(), 3)
        await self.presence_converges("end of scenario", ABRUPT_PRESENCE_BOUND * 2)
        streams = self.producer.streams
        for desktop in self.stack.desktops:
            self.recorder.client(desktop.history(streams), streams)
            for state in desktop.states():
                for stream in state.get("streams", []):
                    self.metrics["max_lag"] = max(self.metrics.get("max_lag", 0), int(stream.get("lag") or 0))
        if self.recorder.acks or self.recorder.unknowns:
            try:
                self.recorder.host_final(await self.stack.final_history())
            except Exception as exc:
                self.problems.append(f"could not read the host's final history: {exc!r}"[:400])
        guards = self.guards()
        history = replace(self.recorder.freeze(), streams=tuple(streams))
        report = check_history(history)
        stats = {name: vars(proxy.stats).copy() for name, proxy in self.stack.proxies.items()}
        self.metrics.update(
            events=len(self.recorder.acks),
            unknown_outcomes=report.unknown_outcomes,
            power_cut=self.power_cut is not None,
            host_restarts=max(0, self.stack.host_starts - 1),
            producer_retries=self.producer.retries,
            faults=sum(len(p.faults) for p in self.stack.proxies.values()),
            proxy=stats,
            reconnects=sum(max(0, s["connections"] - 1) for s in stats.values()),
            desktop_reconnects=sum(_live_transitions(d.states()) - 1 for d in self.stack.desktops if d.states()),
            recovery=self.recovery,
        )
        result = ScenarioResult(
            self.name, self.seed, report, tuple(guards), tuple(self.problems), self.metrics, history
        )
        self.journal.write("result", scenario=self.name, seed=self.seed, ok=result.ok, summary=result.summary())
        return result

    def guards(self) -> list[GuardViolation]:
        """Legacy routes in any proxy's request log; components that are not processes or bypass their proxy."""
        requests = [r for proxy in self.stack.proxies.values() for r in proxy.requests]
        found = route_violations(requests, load_forbidden())
        listeners: list[tuple[str, int | None, int]] = []
        clients: list[tuple[str, int | None, int]] = []
        s = self.stack
        for name, service, port in (
            ("host", s.host, s.host_port),
            ("control", s.control, s.control_port),
            ("runtime", s.runtime, s.runtime_port),
        ):
            if service is not None:
                listeners.append((name, service.process.pid, port))
        if s.runtime is not None and self.recorder.acks:
            clients.append(("runtime→host", s.runtime.process.pid, s.proxy("runtime→host").port))
        for desktop in s.desktops:
            if desktop.alive and desktop.process is not None:
                clients.append((f"desktop {desktop.name}", desktop.process.process.pid, s.proxy("desktop→host").port))
        found += process_violations(listeners, clients)
        if not requests:
            found.append(GuardViolation("no traffic", "no request went through any proxy"))
        return found


def _live_transitions(states: list[dict[str, Any]]) -> int:
    count, previous = 0, None
    for state in states:
        phase = state.get("connection", {}).get("phase")
        if phase == "live" and previous != "live":
            count += 1
        previous = phase
    return count


# ----- helpers for SDK clients -----


async def token_grant(run: Run, key_name: str, kind: str = "test") -> TokenGrant:
    """A control-issued reader token for a seed-derived key."""
    session = await fetch_session_token(
        run.stack.control_public_url, seeded_key(run.seed, key_name), ("sync.subscribe",), ("*",), None, kind
    )
    return TokenGrant(session.token, session.expires_at)


def key_hex(run: Run, key_name: str) -> str:
    """The public key of a seed-derived key, as presence shows it."""
    return seeded_key(run.seed, key_name).public_key().hex


def bounds_hold(run: Run) -> None:
    """Turn every presence observation that missed its bound into a problem (the checker already flags the rows)."""
    for label, seconds in run.recovery.items():
        bound = HALF_OPEN_PRESENCE_BOUND if "half-open" in label else ABRUPT_PRESENCE_BOUND
        if label.startswith("presence:") and seconds > bound:
            run.problems.append(f"{label} took {seconds:.1f}s > bound {bound:.0f}s")


def spread(run: Run, seconds: float) -> float:
    """The pause between a run's batches that spreads its publishing over about `seconds` (faults hit mid-load)."""
    return seconds / max(1, run.profile.events_per_stream // run.profile.batch_size)


def result_record(result: ScenarioResult) -> dict[str, Any]:
    """One JSON line of the results file."""
    return {
        "scenario": result.name,
        "seed": result.seed,
        "ok": result.ok,
        "violations": [str(v) for v in result.report.violations],
        "guards": [str(g) for g in result.guards],
        "problems": list(result.problems),
        "metrics": result.metrics,
        "replay": replay_hint(result),
    }


def write_history(result: ScenarioResult, out_dir: Path) -> Path:
    """Write the run's history as JSON (for re-checking offline); returns its path."""
    path = out_dir / f"history-{result.name}-{result.seed}.json"
    path.write_text(json.dumps(history_to_json(result.history), sort_keys=True))
    return path
