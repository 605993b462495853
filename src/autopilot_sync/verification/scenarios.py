"""The scenarios: each starts a real stack, drives load and faults from one seed, records a history, and checks it.

Every scenario ends the same way (`Run.finish`): the faults are lifted, every desktop must catch up, presence must
return to the truth, the checker must find nothing lost, duplicated, reordered or altered, and the guards must find
no legacy route and no component running inside the verifying process. What a seed fixes: the keys, the payloads,
the fault plan (which proxy, which toxic, when, how long) and every jitter draw; what it cannot fix is how the OS
schedules the processes, so a replay reproduces the same run, not the same interleaving to the microsecond.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from autopilot_sync.client import (
    BackoffPolicy,
    ConnectionState,
    ReducerCommitted,
    StateEvent,
    SyncClient,
    TokenGrant,
    connect,
)
from autopilot_sync.client.connection import Connection
from autopilot_sync.client.schema import fetch_schema
from autopilot_sync.control.client import fetch_session_token
from autopilot_sync.module.canonical import hash_value
from autopilot_sync.spacetime.values import Timestamp
from autopilot_sync.verification.checker import CheckReport, check_history, check_presence
from autopilot_sync.verification.guards import GuardViolation, load_forbidden, process_violations, route_violations
from autopilot_sync.verification.history import (
    Applied,
    ClientHistory,
    History,
    HistoryRecorder,
    PresenceCheck,
    StreamView,
    history_to_json,
)
from autopilot_sync.verification.powercut import PowerCutFault, read_ledger
from autopilot_sync.verification.proxy import (
    Bandwidth,
    Blackhole,
    Direction,
    FaultRecord,
    Latency,
    Slicer,
    Timeout,
    Toxic,
)
from autopilot_sync.verification.restore_drill import restore_drill
from autopilot_sync.verification.stack import DATABASE, HOST_IDLE_SECONDS, ChaosStack, seeded_key, wait_until
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


def _count_reason(reasons: Counter[str], event: StateEvent) -> None:
    if event.state is ConnectionState.BACKING_OFF:
        reasons[(event.reason or "")[:120]] += 1


# ----- scenarios -----


async def handshake(run: Run) -> None:
    """Two clients with control tokens (two Nostr keys): presence shows 2 connections and 2 identities, then 0; after
    a TCP reset and a SIGKILLed desktop presence returns to the truth within ABRUPT_PRESENCE_BOUND."""
    await run.stack.start(runtime=False)
    url = run.stack.proxy("clients→host").url
    grants = {name: await token_grant(run, name) for name in ("alice", "bob")}
    keys = {name: key_hex(run, name) for name in grants}

    def new_clients() -> list[SyncClient]:
        return [
            SyncClient(
                url,
                DATABASE,
                token=grants[n].token,
                policy=BackoffPolicy(base=0.2, cap=1.0),
                rng=random.Random(f"{run.seed}:{n}"),
            )
            for n in grants
        ]

    clients = new_clients()
    for client in clients:
        await client.start()
    for client in clients:
        await client.wait_connected()
    await run.presence_converges("two clients connected", ABRUPT_PRESENCE_BOUND, {keys["alice"]: 1, keys["bob"]: 1})
    for client in clients:
        await client.close()
    await run.presence_converges("both disconnected cleanly", ABRUPT_PRESENCE_BOUND, {})

    # A TCP reset through the proxy, with clients that reconnect: no stale row may remain next to the new ones.
    clients = new_clients()
    for client in clients:
        await client.start()
        await client.wait_connected()
    await run.presence_converges("reconnecting clients up", ABRUPT_PRESENCE_BOUND, {keys["alice"]: 1, keys["bob"]: 1})
    run.stack.proxy("clients→host").reset_all()
    await wait_until("both clients reconnected", lambda: all(c.reconnects >= 1 and c.connection for c in clients), 20)
    await run.presence_converges("after reset, reconnected", ABRUPT_PRESENCE_BOUND, {keys["alice"]: 1, keys["bob"]: 1})
    for client in clients:
        await client.close()

    # A TCP reset with one-shot connections: the truth becomes 0 and must be reached within the bound.
    conns = [await connect(url, DATABASE, token=grants[n].token) for n in grants]
    await run.presence_converges("one-shot connections up", ABRUPT_PRESENCE_BOUND, {keys["alice"]: 1, keys["bob"]: 1})
    run.stack.proxy("clients→host").reset_all()
    await run.presence_converges("after TCP reset", ABRUPT_PRESENCE_BOUND, {})
    for conn in conns:
        with contextlib.suppress(Exception):
            await conn.close()

    # SIGKILL of a headless desktop process.
    desktop = run.stack.add_desktop("victim")
    await wait_until("desktop live", lambda: desktop.last().get("connection", {}).get("phase") == "live", 30)
    await run.presence_converges("desktop live", ABRUPT_PRESENCE_BOUND)
    await desktop.kill()
    await run.presence_converges("after desktop SIGKILL", ABRUPT_PRESENCE_BOUND)
    desktop.start()
    await wait_until("desktop live again", lambda: desktop.last().get("connection", {}).get("phase") == "live", 30)

    _bounds_hold(run)


async def half_open_presence(run: Run) -> None:
    """A link that goes silent without FIN or RST (blackhole both ways): the host can only notice through its idle
    timeout, so presence must return to the truth within HALF_OPEN_PRESENCE_BOUND."""
    await run.stack.start(runtime=False)
    grant = await token_grant(run, "alice")
    proxy = run.stack.proxy("clients→host")
    conn = await connect(proxy.url, DATABASE, token=grant.token)
    await run.presence_converges("half-open candidate up", ABRUPT_PRESENCE_BOUND, {key_hex(run, "alice"): 1})
    proxy.set_toxics(Blackhole())
    await run.presence_converges("after half-open link", HALF_OPEN_PRESENCE_BOUND, {})
    proxy.reset_all()
    proxy.clear()
    with contextlib.suppress(Exception):
        await conn.close()
    _bounds_hold(run)


def _bounds_hold(run: Run) -> None:
    """Turn every presence observation that missed its bound into a problem (the checker already flags the rows)."""
    for label, seconds in run.recovery.items():
        bound = HALF_OPEN_PRESENCE_BOUND if "half-open" in label else ABRUPT_PRESENCE_BOUND
        if label.startswith("presence:") and seconds > bound:
            run.problems.append(f"{label} took {seconds:.1f}s > bound {bound:.0f}s")


async def end_to_end(run: Run) -> None:
    """Many streams at once, runtime → host → desktops, no faults: the baseline every chaos scenario is held to."""
    await run.stack.start()
    for i in range(run.profile.desktops):
        run.stack.add_desktop(f"d{i}", run.producer.streams)
    await run.producer.publish(run.profile.events_per_stream, run.profile.batch_size)


def _spread(run: Run, seconds: float) -> float:
    """The pause between a run's batches that spreads its publishing over about `seconds` (faults hit mid-load)."""
    return seconds / max(1, run.profile.events_per_stream // run.profile.batch_size)


def churn_plan(rng: random.Random, seconds: float) -> list[tuple[float, str, str, float]]:
    """The fault schedule of a churn run: `(at, proxy, fault, duration)`, fully determined by the rng."""
    plan: list[tuple[float, str, str, float]] = []
    at = 0.0
    proxies = ("runtime→host", "desktop→host", "control")
    faults = ("latency", "slicer", "bandwidth", "reset", "blackhole", "timeout")
    while at < seconds or len(plan) < len(proxies):
        at += round(rng.uniform(0.3, 1.0), 3)
        # The first rounds visit every pair once, so even a short run faults each of them.
        proxy = proxies[len(plan)] if len(plan) < len(proxies) else rng.choice(proxies)
        plan.append((round(at, 3), proxy, rng.choice(faults), round(rng.uniform(0.2, 1.0), 3)))
    return plan


async def apply_fault(run: Run, proxy_name: str, fault: str, duration: float) -> None:
    """Apply one planned fault for `duration` seconds, then lift it (a silenced link always ends in a reset, as a
    real one would: dropping bytes inside a live TCP stream is not something a network does)."""
    proxy = run.stack.proxy(proxy_name)
    if fault == "reset":
        proxy.reset_all()
        return
    toxics: dict[str, Toxic] = {
        "latency": Latency(0.05, 0.04),
        "slicer": Slicer(average=24, variation=16, delay=0.0005),
        "bandwidth": Bandwidth(64 * 1024),
        "blackhole": Blackhole(),
        "timeout": Timeout(duration / 2),
    }
    proxy.set_toxics(toxics[fault])
    await asyncio.sleep(duration)
    proxy.clear()
    if fault in ("blackhole", "timeout"):
        proxy.reset_all()


async def churn(run: Run) -> None:
    """Network churn on every proxied pair while the runtime publishes many streams."""
    await run.stack.start()
    for i in range(run.profile.desktops):
        run.stack.add_desktop(f"d{i}", run.producer.streams)
    plan = churn_plan(run.rng, run.profile.churn_seconds)
    run.note("plan", plan=plan)

    async def faults() -> None:
        started = time.monotonic()
        for at, proxy_name, fault, duration in plan:
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            await apply_fault(run, proxy_name, fault, duration)

    pause = _spread(run, run.profile.churn_seconds)
    await asyncio.gather(faults(), run.producer.publish(run.profile.events_per_stream, run.profile.batch_size, pause))


async def reconnect_storm(run: Run) -> None:
    """Hundreds of SDK clients lose their connection at once and come back with full-jitter backoff; a probe reducer
    call on a separate connection must keep answering within PROBE_BOUND; all must converge."""
    await run.stack.start()
    await run.producer.publish(2, 2)
    stream = run.producer.streams[0]
    url = run.stack.proxy("clients→host").url
    key_names = [f"storm{k}" for k in range(run.profile.storm_keys)]
    grants = {name: await token_grant(run, name, "storm") for name in key_names}
    async with aiohttp.ClientSession() as http:
        schema = await fetch_schema(http, run.stack.host_url, DATABASE, grants[key_names[0]].token)
    clients: list[SyncClient] = []
    reasons: Counter[str] = Counter()
    run.metrics["storm_close_reasons"] = reasons
    for i in range(run.profile.storm_clients):
        grant = grants[key_names[i % len(key_names)]]

        async def provide(grant: TokenGrant = grant) -> TokenGrant:
            return grant

        client = SyncClient(
            url,
            DATABASE,
            token_provider=provide,
            schema=schema,
            policy=BackoffPolicy(base=0.5, cap=5.0),
            rng=random.Random(f"{run.seed}:c{i}"),
        )
        client.on_state(lambda event: _count_reason(reasons, event))
        clients.append(client)
    started = time.monotonic()
    for offset in range(0, len(clients), 50):
        chunk = clients[offset : offset + 50]
        for client in chunk:
            await client.start()
            await client.subscribe([f"SELECT * FROM stream_head WHERE stream_id = '{stream}'"])
        await asyncio.gather(*(c.wait_connected() for c in chunk))
    run.note("storm clients connected", clients=len(clients), seconds=round(time.monotonic() - started, 2))
    per_key = {
        key_hex(run, name): sum(1 for i in range(len(clients)) if i % len(key_names) == k)
        for k, name in enumerate(key_names)
    }
    probe_grant = await token_grant(run, "probe", "probe")
    probe = await connect(run.stack.host_url, DATABASE, token=probe_grant.token)
    run.extra_presence = {**per_key, key_hex(run, "probe"): 1}
    await run.presence_converges("storm clients up", 30)

    latencies: list[float] = []
    stop = asyncio.Event()

    async def probing() -> None:
        while not stop.is_set():
            began = time.monotonic()
            result = await probe.call("heartbeat")
            latencies.append(time.monotonic() - began)
            if not isinstance(result, ReducerCommitted):
                run.problems.append(f"probe heartbeat failed: {result}")
            await asyncio.sleep(0.2)

    prober = asyncio.create_task(probing())
    await asyncio.sleep(0.5)
    reset = run.stack.proxy("clients→host").reset_all()
    storm_began = time.monotonic()
    try:
        await wait_until(
            f"{len(clients)} clients reconnected",
            lambda: all(c.reconnects >= 1 and c.connection is not None for c in clients),
            90,
            every=0.5,
        )
    except TimeoutError as exc:
        run.problems.append(str(exc))
    recovered = time.monotonic() - storm_began
    await run.presence_converges("after the storm", 30)
    await run.producer.publish(3, 3)
    head = run.acked_heads()[stream]

    def caught_up() -> bool:
        for client in clients:
            rows = client.cache.rows("stream_head")
            if not rows or int(rows[0][1]) != head:
                return False
        return True

    try:
        await wait_until("every storm client to see the new head", caught_up, 30)
    except TimeoutError as exc:
        run.problems.append(str(exc))
    stop.set()
    await prober
    worst = max(latencies) if latencies else float("inf")
    run.metrics.update(
        storm_clients=len(clients),
        storm_resets=reset,
        storm_recovery_seconds=round(recovered, 2),
        probe_calls=len(latencies),
        probe_max_seconds=round(worst, 3),
    )
    if worst > PROBE_BOUND:
        run.problems.append(f"probe reducer call took {worst:.2f}s during the storm (bound {PROBE_BOUND}s)")
    if reset < len(clients):
        run.problems.append(f"only {reset} connections were reset, expected at least {len(clients)}")
    await asyncio.gather(*(c.close() for c in clients))
    await probe.close()
    run.extra_presence = {}


async def stale_cursor(run: Run) -> None:
    """A stopped desktop's checkpoint falls below the retained floor after a trim: it must say so and rebuild from
    the floor (never a silent partial replay); a desktop that stayed live keeps everything."""
    await run.stack.start()
    live = run.stack.add_desktop("live", run.producer.streams)
    stale = run.stack.add_desktop("stale", run.producer.streams)
    await run.producer.publish(run.profile.events_per_stream // 2, run.profile.batch_size)
    await run.desktops_caught_up()
    await stale.stop()
    await run.producer.publish(run.profile.events_per_stream // 2, run.profile.batch_size)
    await run.desktops_caught_up()
    heads = run.acked_heads()
    trimmed = run.rng.sample(sorted(heads), k=max(1, len(heads) // 2))
    for stream_id in trimmed:
        await run.stack.call_as_admin("trim_stream", stream_id, heads[stream_id] - 1)
    run.note("trimmed", streams=trimmed)
    stale.start()
    await run.desktops_caught_up()
    for stream_id in trimmed:
        state = stale.stream_state(stream_id)
        if state.get("rebuilds", 0) < 1:
            run.problems.append(f"stale desktop did not rebuild {stream_id}: {state}")
    run.metrics["trimmed_streams"] = len(trimmed)
    del live


async def duplicate_delivery(run: Run) -> None:
    """Acks are dropped on the way back to the runtime (the host commits, the runtime never hears): after the reset
    the outbox retries, the module answers 'duplicate', and no client may see an event twice."""
    await run.stack.start()
    run.stack.add_desktop("d0", run.producer.streams)
    await run.producer.publish(run.profile.batch_size, run.profile.batch_size)
    await run.desktops_caught_up()
    before = sum(head for head, _, _ in (await run.stack.heads()).values())
    proxy = run.stack.proxy("runtime→host")
    proxy.set_toxics(Blackhole(Direction.DOWNSTREAM))
    await run.producer.publish(run.profile.batch_size, run.profile.batch_size)

    async def host_moved() -> bool:
        heads = await run.stack.heads()
        return sum(h for h, _, _ in heads.values()) >= before + run.profile.streams

    try:
        await wait_until("the host to commit while acks are dropped", host_moved, 30)
    except TimeoutError as exc:
        run.problems.append(str(exc))
    await asyncio.sleep(0.5)
    proxy.reset_all()
    proxy.clear()
    await run.producer.publish(run.profile.batch_size, run.profile.batch_size)
    await run.desktops_caught_up()
    duplicates = await run.stack.runtime_metric("autopilot_sync_runtime_duplicates_suppressed_total")
    run.metrics["duplicates_suppressed"] = duplicates
    if duplicates <= 0:
        run.problems.append("the runtime never retried a committed batch: the dropped acks were not exercised")


async def host_sigkill(run: Run) -> None:
    """SIGKILL the host while the runtime publishes, restart it on the same port and data: nothing acknowledged by
    the producer may be lost, presence rows of the dead host are cleared at start."""
    await run.stack.start()
    for i in range(run.profile.desktops):
        run.stack.add_desktop(f"d{i}", run.producer.streams)
    pause = _spread(run, 4.0)

    async def crash() -> None:
        await asyncio.sleep(1.0 + run.rng.uniform(0, 1.0))
        lost: list[int] = []
        # Under the power-cut fault the kill waits for unfsynced bytes; should a kill still cut nothing (the fsync
        # won the race), the host is cut again, at most three times, so the run surely exercises a real loss.
        for _ in range(3 if run.power_cut is not None else 1):
            cut = await run.stack.kill_host()
            detail = "host" if cut is None else f"host (power cut: {cut} unfsynced bytes lost)"
            run.journal.write("fault", scenario=run.name, proxy="-", action="sigkill", detail=detail)
            run.journal.faults += 1
            await asyncio.sleep(run.rng.uniform(0.2, 1.0))
            began = time.monotonic()
            host = await run.stack.start_host()
            run.recovery["host restart"] = round(time.monotonic() - began, 3)
            # What recovery set aside (a torn tail the cut left), as the host logged it: evidence, not a verdict.
            run.metrics["log_tails_set_aside"] = sum(1 for line in list(host.output) if "set aside" in line)
            if cut is None:
                break
            lost.append(cut)
            run.metrics["power_cut_lost_bytes"] = lost
            if cut > 0:
                break

    await asyncio.gather(crash(), run.producer.publish(run.profile.events_per_stream, run.profile.batch_size, pause))


async def runtime_sigkill(run: Run) -> None:
    """SIGKILL the runtime mid-drain and restart it: the outbox resumes in order, producers retrying with the same
    request id get the original seqs, and every acknowledged event reaches every desktop once."""
    await run.stack.start()
    for i in range(run.profile.desktops):
        run.stack.add_desktop(f"d{i}", run.producer.streams)

    async def crash() -> None:
        await asyncio.sleep(1.0 + run.rng.uniform(0, 1.0))
        assert run.stack.runtime is not None
        await asyncio.to_thread(run.stack.runtime.kill)
        run.journal.write("fault", scenario=run.name, proxy="-", action="sigkill", detail="runtime")
        run.journal.faults += 1
        await asyncio.sleep(run.rng.uniform(0.2, 1.0))
        began = time.monotonic()
        await run.stack.start_runtime()
        run.recovery["runtime restart"] = round(time.monotonic() - began, 3)

    pause = _spread(run, 4.0)
    await asyncio.gather(crash(), run.producer.publish(run.profile.events_per_stream, run.profile.batch_size, pause))


#: The slow fsync of `racing-duplicate`: every commit stays unfsynced this long, far longer than an answer takes.
RACE_FSYNC_DELAY = 0.5
#: The slow fsync of `undurable-read`, and how long its reader waits for `/sql` before the host is cut: an answer
#: that does not wait for durability comes in milliseconds, one that waits cannot come before the cut.
READ_FSYNC_DELAY = 3.0
READ_WAIT = 2.0


@dataclass
class DirectProducer:
    """An SDK connection that appends to one stream of its own with the producer's key (no runtime in between)."""

    run: Run
    conn: Connection
    stream_id: str
    run_id: str

    def event(self, seq: int) -> tuple[tuple[Any, ...], str, str]:
        """The `append_sync_events` item for `seq`, its idempotency key and payload hash."""
        text, hashed = hash_value({"run_id": self.run_id, "type": "run.message.delta", "data": {"n": seq}})
        key = f"{self.stream_id}:{seq}"
        return (self.stream_id, key, "run.message.delta", text, hashed, seq, Timestamp.now()), key, hashed

    async def append(self, seq: int) -> None:
        """Append one event and record its acknowledgement (a refusal ends the scenario)."""
        item, key, hashed = self.event(seq)
        answer = await self.conn.call("append_sync_events", [item])
        if not isinstance(answer, ReducerCommitted):
            raise RuntimeError(f"append of seq {seq} failed: {answer}")
        self.run.recorder.ack(self.stream_id, seq, hashed, key)

    def cut(self) -> None:
        """SIGKILL the host now, on the loop (under the power cut: unfsynced bytes die), and journal what it lost."""
        assert self.run.stack.host is not None
        self.run.stack.require_power_cut_engaged()
        self.run.stack.host.kill()
        lost = read_ledger(self.run.stack.power_cut_ledger)
        self.run.metrics.setdefault("power_cut_lost_bytes", []).append(lost)
        self.run.journal.write(
            "fault", scenario=self.run.name, proxy="-", action="sigkill", detail=f"host (power cut: {lost} B)"
        )
        self.run.journal.faults += 1


async def direct_producer(run: Run, fsync_delay: float) -> DirectProducer:
    """Start the stack (no runtime) with the host under the power cut, no writeback (only an fsync saves a record,
    so the verdict does not depend on the rng) and a slow fsync; connect a producer to a stream of its own."""
    base = run.power_cut or PowerCutFault()
    run.power_cut = replace(base, writeback=0.0, fsync_delay=max(base.fsync_delay, fsync_delay))
    run.stack.power_cut = run.power_cut
    await run.stack.start(runtime=False)
    session = await fetch_session_token(
        run.stack.control_public_url, run.stack.producer_key, ("sync.append", "sync.subscribe"), ("*",), None, "race"
    )
    conn = await connect(run.stack.proxy("clients→host").url, DATABASE, token=session.token)
    run_id = f"{run.name}-{run.seed % 100000}"
    run.producer.run_ids = [run_id]  # the stream `finish` reads and checks (the HTTP producer itself is not used)
    return DirectProducer(run, conn, run.producer.streams[0], run_id)


async def racing_duplicate(run: Run) -> None:
    """Two producers race one append (same idempotency key, same payload) on one connection while the host's commit
    log is under power-cut semantics with a slow fsync; the host is cut the moment the first answer arrives. An
    answered append must survive the cut, since no answer may leave before the commit it reveals is durable (issue
    15, item 1); the call left without an answer is an unknown outcome that may land at most once."""
    producer = await direct_producer(run, RACE_FSYNC_DELAY)
    await producer.append(1)
    raced, key, hashed = producer.event(2)
    calls = [asyncio.create_task(producer.conn.call("append_sync_events", [raced])) for _ in range(2)]
    done, _ = await asyncio.wait(calls, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    producer.cut()  # at once: the cut must land inside the slow fsync if the answer was early
    for number, call in enumerate(calls):
        try:
            result = await asyncio.wait_for(call, 10) if call not in done else call.result()
        except Exception as exc:  # the connection died with the host: no answer
            run.recorder.unknown(f"race-{number}", producer.stream_id, hashed, retried=False, reason=repr(exc)[:200])
            continue
        if isinstance(result, ReducerCommitted):
            run.recorder.ack(producer.stream_id, 2, hashed, key)
        else:
            run.problems.append(f"a raced append was refused: {result}")
    if not done:
        run.problems.append("neither raced append was answered within 30 s")
    with contextlib.suppress(Exception):
        await producer.conn.close()
    await run.stack.start_host()


async def undurable_read(run: Run) -> None:
    """A reader queries `/sql` while an append's commit is written but not yet fsynced (slow fsync), then the host
    is cut: what `/sql` showed must still be in the host's history, since no answer may reveal a commit before it
    is durable (issue 15, item 2). A row read and then lost is a phantom for the reader (`unacknowledged`)."""
    producer = await direct_producer(run, READ_FSYNC_DELAY)
    await producer.append(1)
    await run.stack.sql("SELECT * FROM stream_head")  # the observer's token, fetched before the clock matters
    item, _, hashed = producer.event(2)
    call = asyncio.create_task(producer.conn.call("append_sync_events", [item]))
    await wait_until(
        "the commit to be written, not yet fsynced",
        lambda: (read_ledger(run.stack.power_cut_ledger) or 0) > 0,
        30,
        every=0.001,
    )
    read = asyncio.create_task(
        run.stack.sql_records(f"SELECT * FROM sync_event WHERE stream_id = '{producer.stream_id}'")
    )
    done, _ = await asyncio.wait([read], timeout=READ_WAIT)
    producer.cut()
    rows = read.result() if read in done and read.exception() is None else None
    with contextlib.suppress(Exception):
        await read
    try:
        await asyncio.wait_for(call, 10)
        run.problems.append("the append was answered although the host was cut inside its fsync")
    except Exception as exc:  # no answer: it may or may not have landed
        run.recorder.unknown("read-append", producer.stream_id, hashed, retried=False, reason=repr(exc)[:200])
    run.metrics["sql_answered_before_the_cut"] = rows is not None
    if rows is not None:
        seen = sorted(
            (
                Applied(str(r["stream_id"]), int(r["seq"]), str(r["idempotency_key"]), str(r["payload_hash"]))
                for r in rows
            ),
            key=lambda event: event.seq,
        )
        reader = ClientHistory("sql-reader", (StreamView(producer.stream_id, tuple(seen)),))
        run.recorder.client(reader, [producer.stream_id])
    with contextlib.suppress(Exception):
        await producer.conn.close()
    await run.stack.start_host()


#: Scenarios that are about the power cut and always run under it (with their own writeback and fsync delay).
POWER_CUT_SCENARIOS = frozenset({"racing-duplicate", "undurable-read"})

SCENARIOS: dict[str, Callable[[Run], Awaitable[None]]] = {
    "handshake": handshake,
    "half-open": half_open_presence,
    "end-to-end": end_to_end,
    "churn": churn,
    "reconnect-storm": reconnect_storm,
    "stale-cursor": stale_cursor,
    "duplicate-delivery": duplicate_delivery,
    "host-sigkill": host_sigkill,
    "runtime-sigkill": runtime_sigkill,
    "racing-duplicate": racing_duplicate,
    "undurable-read": undurable_read,
    "restore-drill": restore_drill,
}


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
    journal = journal or Journal()
    if power_cut is None and name in POWER_CUT_SCENARIOS:
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
        await SCENARIOS[name](run)
        return await run.finish()
    except BaseException:
        journal.write("error", scenario=name, seed=seed, tails=run.stack.tails())
        raise
    finally:
        await run.stack.stop()


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
