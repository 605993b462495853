"""The system under test: host, control, runtime and headless desktops as child processes, proxies between them.

Every component is a real `autopilot-sync <service>` process; the only things in the verifying process are the
fault proxies, the producer (an HTTP client of the runtime), SDK clients, and an observer that reads the host over
its `/sql` HTTP route. Wiring:

```
runtime ──▶ [runtime→host] ──▶ host ◀── [desktop→host] ◀── desktops        SDK clients ──▶ [clients→host] ──▶ host
runtime, desktops, host (JWKS) ──▶ [control] ──▶ control
```

The wiring itself is the local stack's (`devtools/stack.py`, the one wiring of the project); this stack gives it a
route hook that sends each pair through its proxy, seed-derived keys and the suite's shorter timeouts. Control signs
its public URL into every proof check, so every caller must reach it at one URL: one proxy carries runtime→control
and desktop→control (and the host's JWKS fetches). Keys are derived from the run's seed, so a replayed seed has the
same identities.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from autopilot_sync.control.client import SessionToken, fetch_session_token
from autopilot_sync.desktop.state_lines import read_states
from autopilot_sync.devtools.processes import ServiceProcess, free_port, start_service
from autopilot_sync.devtools.stack import LocalStack
from autopilot_sync.nostr.keys import SecretKey
from autopilot_sync.settings.environment import service_environment
from autopilot_sync.settings.host import HostSettings
from autopilot_sync.settings.runtime import RuntimeSettings
from autopilot_sync.verification.history import Applied, ClientHistory, PresenceRow, StreamView
from autopilot_sync.verification.powercut import BANNER, PowerCutFault, host_environment, read_ledger
from autopilot_sync.verification.proxy import FaultProxy, FaultRecord

DATABASE = "autopilot-sync"
READY_TIMEOUT = 60.0

#: The host pings every HOST_PING_SECONDS and drops a socket silent for HOST_IDLE_SECONDS (production: 15 and 30):
#: short here so a half-open link is noticed within seconds, and still several pings per idle window.
HOST_PING_SECONDS = 2
HOST_IDLE_SECONDS = 6


#: Every seed-derived key a scenario reads with (the observer, SDK clients, desktops by name): the runtime makes each
#: a reader of every stream it publishes, since reading is row-level (docs/security.md "Who may read").
READER_KEY_NAMES = (
    "observer",
    "alice",
    "bob",
    "probe",
    *(f"storm{k}" for k in range(32)),
    *(f"desktop:{name}" for name in ("victim", "live", "stale", *(f"d{i}" for i in range(32)))),
)


def seeded_key(seed: int, name: str) -> SecretKey:
    """A Nostr key that follows from the seed and a role name (replays keep their identities)."""
    return SecretKey.from_hex(hashlib.sha256(f"autopilot-sync-chaos:{seed}:{name}".encode()).hexdigest())


async def start_child(
    service: str, args: Sequence[str], env: dict[str, str], ready_within: float = READY_TIMEOUT
) -> ServiceProcess:
    """Start a service child without blocking the event loop the proxies run on."""
    process = start_service(service, list(args), env=env, wait=False)
    await asyncio.to_thread(process.wait_ready, ready_within)
    return process


@dataclass
class DesktopProcess:
    """One `desktop --headless` child with its own key and store."""

    name: str
    key: SecretKey
    config_dir: Path
    env: dict[str, str]
    process: ServiceProcess | None = None

    @property
    def pubkey_hex(self) -> str:
        """Its Nostr public key, as presence shows it."""
        return self.key.public_key().hex

    @property
    def alive(self) -> bool:
        """True while the child runs."""
        return self.process is not None and self.process.process.poll() is None

    def start(self) -> None:
        """Start (or restart) the child; it keeps its key and store across restarts."""
        self.process = start_service("desktop", ["--headless"], env=self.env, wait=False)

    def states(self) -> list[dict[str, Any]]:
        """Every JSON state it printed so far."""
        return [] if self.process is None else read_states(list(self.process.output))

    def last(self) -> dict[str, Any]:
        """The newest state printed."""
        states = self.states()
        return states[-1] if states else {}

    def stream_state(self, stream_id: str) -> dict[str, Any]:
        """The newest state of one stream (empty when it does not know the stream yet)."""
        for stream in self.last().get("streams", []):
            if stream["stream_id"] == stream_id:
                return dict(stream)
        return {}

    def history(self, stream_ids: Sequence[str]) -> ClientHistory:
        """What it applied, read from its store in insertion order, with the floor it declared a rebuild from."""
        path = self.config_dir / f"{DATABASE}.sqlite3"
        rows: list[tuple[Any, ...]] = []
        if path.exists():
            with contextlib.closing(sqlite3.connect(path)) as db:
                rows = db.execute(
                    "SELECT stream_id, seq, idempotency_key, payload_hash, payload FROM applied_event ORDER BY rowid"
                ).fetchall()
        views = []
        for stream_id in stream_ids:
            applied = tuple(Applied(s, int(q), k, h, p) for s, q, k, h, p in rows if s == stream_id)
            state = self.stream_state(stream_id)
            rebuilt_from = int(state["retained_from"]) if state.get("rebuilds", 0) > 0 else None
            views.append(StreamView(stream_id, applied, rebuilt_from))
        return ClientHistory(self.name, tuple(views))

    async def stop(self) -> None:
        """SIGTERM (clean close: the host removes its presence at once)."""
        if self.process is not None:
            await asyncio.to_thread(self.process.stop)

    async def kill(self) -> None:
        """SIGKILL: no goodbye, the kernel closes its sockets."""
        if self.process is not None:
            await asyncio.to_thread(self.process.kill)


@dataclass
class ChaosStack:
    """Host, control and runtime processes plus proxies, all in `root`; `add_desktop()` adds desktops."""

    root: Path
    seed: int
    on_fault: Callable[[FaultRecord], None] | None = None
    power_cut: PowerCutFault | None = None
    host_port: int = field(default_factory=free_port)
    control_port: int = field(default_factory=free_port)
    runtime_port: int = field(default_factory=free_port)
    host: ServiceProcess | None = None
    control: ServiceProcess | None = None
    runtime: ServiceProcess | None = None
    desktops: list[DesktopProcess] = field(default_factory=list)
    proxies: dict[str, FaultProxy] = field(default_factory=dict)
    runtime_env: dict[str, str] = field(default_factory=dict)
    host_starts: int = 0
    _observer_token: SessionToken | None = None
    local: LocalStack = field(init=False)

    def __post_init__(self) -> None:
        self.local = LocalStack(
            self.root,
            self.host_port,
            self.control_port,
            self.runtime_port,
            runtime_key=seeded_key(self.seed, "runtime"),
            host_env=service_environment(
                HostSettings,
                {"ping_interval_seconds": HOST_PING_SECONDS, "idle_timeout_seconds": HOST_IDLE_SECONDS},
            ),
            runtime_env={**service_environment(RuntimeSettings, {"retry_cap_seconds": 1}), **self.runtime_env},
            readers=[seeded_key(self.seed, name).public_key().hex for name in READER_KEY_NAMES],
            route=self._route,
        )

    def _route(self, caller: str, service: str) -> str | None:
        """Every pair through its proxy: control through `control`, the host through the caller's own proxy."""
        if service == "control":
            return self.proxies["control"].url
        pair = {"runtime": "runtime→host", "desktop": "desktop→host", "control": "desktop→host"}.get(caller)
        return self.proxies[pair].url if pair is not None else None

    # ----- keys and URLs -----

    @property
    def producer_key(self) -> SecretKey:
        """The runtime's key (on control's append allowlist, so it may also trim)."""
        return self.local.producer_key

    @property
    def observer_key(self) -> SecretKey:
        """The key the verifier reads the host with (never connects over WebSocket, so never in presence)."""
        return seeded_key(self.seed, "observer")

    @property
    def host_url(self) -> str:
        """The host's real address (only the observer, the probe and the proxies use it)."""
        return f"http://127.0.0.1:{self.host_port}"

    @property
    def runtime_url(self) -> str:
        """The runtime's producer API (the producer is an HTTP client, outside the proxied pairs)."""
        return f"http://127.0.0.1:{self.runtime_port}"

    @property
    def producer_socket(self) -> Path:
        """The runtime's mode 0600 producer socket, through which the producer appends without a token."""
        return self.local.producer_socket

    @property
    def control_public_url(self) -> str:
        """Control as everyone reaches it: through the control proxy (also the token issuer)."""
        return self.local.control_public_url

    def proxy(self, name: str) -> FaultProxy:
        """One of `runtime→host`, `desktop→host`, `clients→host`, `control`."""
        return self.proxies[name]

    # ----- lifecycle -----

    async def start(self, *, runtime: bool = True) -> ChaosStack:
        """Start the proxies, then host, control and (optionally) runtime, each waiting for its ready line."""
        self.root.mkdir(parents=True, exist_ok=True)
        for name, port in (
            ("runtime→host", self.host_port),
            ("desktop→host", self.host_port),
            ("clients→host", self.host_port),
            ("control", self.control_port),
        ):
            rng = random.Random(f"{self.seed}:{name}")
            self.proxies[name] = await FaultProxy(name, "127.0.0.1", port, rng=rng, on_fault=self.on_fault).start()
        await self.start_host()
        self.control = await start_child("control", [], self.local.control_environment())
        await self.local.trust_control_async()  # the sync module fails closed until its owner names control
        if runtime:
            await self.start_runtime()
        return self

    async def start_host(self) -> ServiceProcess:
        """Start (or restart on the same port and data dir) the host, under power-cut semantics if the run asks.

        Under the power-cut fault the host's commit-log writes stay in its memory until fsync (`powercut.py`), so a
        SIGKILL loses exactly what was not fsynced (`kill_host` checks the emulation really engaged).
        """
        env = self.local.host_environment()
        self.host_starts += 1
        if self.power_cut is not None:
            env |= host_environment(
                self.root / "host" / "commitlog",
                writeback=self.power_cut.writeback,
                fsync_delay=self.power_cut.fsync_delay,
                seed=self.seed * 1000 + self.host_starts,
                ledger=self.power_cut_ledger,
            )
        self.host = await start_child("host", [], env)
        return self.host

    @property
    def power_cut_ledger(self) -> Path:
        """Where the host under the power-cut fault reports its unfsynced bytes (outside its data dir)."""
        return self.root / "host-powercut-ledger"

    async def kill_host(self, wait_for_unfsynced: float = 10.0) -> int | None:
        """SIGKILL the host; under the power-cut fault first wait (up to `wait_for_unfsynced` s) until its commit
        log holds unfsynced bytes, so the cut loses something. Returns the bytes the cut lost (None without it)."""
        assert self.host is not None
        if self.power_cut is not None:
            with contextlib.suppress(TimeoutError):
                await wait_until(
                    "unfsynced commit-log bytes",
                    lambda: (read_ledger(self.power_cut_ledger) or 0) > 0,
                    wait_for_unfsynced,
                    every=0.001,
                )
        self.require_power_cut_engaged()
        await asyncio.to_thread(self.host.kill)
        return read_ledger(self.power_cut_ledger) if self.power_cut is not None else None

    def require_power_cut_engaged(self) -> None:
        """Under the power-cut fault, fail unless the live host printed the emulation's banner for a log segment:
        otherwise a kill would silently be a plain SIGKILL (the product changed how it writes its log)."""
        if self.power_cut is None or self.host is None:
            return
        if not any(BANNER in line for line in list(self.host.output)):
            raise RuntimeError(f"the power-cut emulation did not engage in the host:\n{self.host.tail()}")

    async def start_runtime(self) -> ServiceProcess:
        """Start (or restart) the runtime; it reaches host and control only through their proxies."""
        self.runtime = await start_child("runtime", [], self.local.runtime_environment())
        return self.runtime

    def add_desktop(self, name: str, streams: Sequence[str] = ()) -> DesktopProcess:
        """Create and start a headless desktop with a seed-derived key, through the desktop proxies."""
        config_dir = self.root / "desktops" / name
        config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(config_dir, 0o700)
        key = seeded_key(self.seed, f"desktop:{name}")
        env = self.local.desktop_env(config_dir, key, {"streams": tuple(streams), "reconnect_max_delay_seconds": 2})
        desktop = DesktopProcess(name, key, config_dir, env)
        desktop.start()
        self.desktops.append(desktop)
        return desktop

    async def stop(self) -> None:
        """Stop every child (SIGTERM, then SIGKILL) and every proxy."""
        for desktop in self.desktops:
            with contextlib.suppress(Exception):
                await desktop.stop()
        for service in (self.runtime, self.control, self.host):
            if service is not None:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(service.stop)
        for proxy in self.proxies.values():
            await proxy.stop()

    def tails(self, lines: int = 30) -> str:
        """The last output of every child, for failure messages."""
        services = [s for s in (self.host, self.control, self.runtime) if s is not None]
        services += [d.process for d in self.desktops if d.process is not None]
        return "\n".join(f"--- {s.service} (pid {s.process.pid})\n{s.tail(lines)}" for s in services)

    # ----- the observer (HTTP only: it never appears in presence) -----

    async def _observer(self, http: aiohttp.ClientSession) -> str:
        token = self._observer_token
        if token is None or token.needs_refresh():
            first = self._observer_token is None
            token = await fetch_session_token(
                self.control_public_url, self.observer_key, ("sync.subscribe",), None, None, "verifier", session=http
            )
            self._observer_token = token
            if first:  # one reducer call makes the observer a member (presence is visible to members only)
                async with http.post(
                    f"{self.host_url}/v1/database/{DATABASE}/call/heartbeat",
                    json=[],
                    headers={"Authorization": f"Bearer {token.token}"},
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as response:
                    if response.status != 200:
                        raise RuntimeError(f"observer heartbeat: HTTP {response.status}: {await response.text()}")
        return token.token

    async def sql(self, query: str) -> list[list[Any]]:
        """Rows of one query over the host's `/sql` route, straight to the host (not through a proxy)."""
        return (await self._sql(query))["rows"]  # type: ignore[no-any-return]

    async def sql_records(self, query: str) -> list[dict[str, Any]]:
        """Rows of one query as `{column: value}`, named by the result's schema (robust to added columns)."""
        result = await self._sql(query)
        names = [element["name"].get("some") for element in result["schema"]["elements"]]
        return [dict(zip(names, row, strict=True)) for row in result["rows"]]

    async def final_history(self) -> tuple[StreamView, ...]:
        """The host's own history: its `sync_event` rows per stream in seq order, from each stream's retained floor."""
        floors = {
            str(row["stream_id"]): int(row["retained_from_seq"])
            for row in await self.sql_records("SELECT * FROM stream_head")
        }
        events: dict[str, list[Applied]] = {}
        for row in await self.sql_records("SELECT * FROM sync_event"):
            stream_id = str(row["stream_id"])
            events.setdefault(stream_id, []).append(
                Applied(
                    stream_id, int(row["seq"]), str(row["idempotency_key"]), str(row["payload_hash"]), row["payload"]
                )
            )
        return tuple(
            StreamView(
                stream_id,
                tuple(sorted(events.get(stream_id, []), key=lambda event: event.seq)),
                floors.get(stream_id) if floors.get(stream_id, 1) > 1 else None,
            )
            for stream_id in sorted(set(floors) | set(events))
        )

    async def _sql(self, query: str) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http:
            token = await self._observer(http)
            async with http.post(
                f"{self.host_url}/v1/database/{DATABASE}/sql",
                data=query.encode(),
                headers={"Authorization": f"Bearer {token}"},
                timeout=aiohttp.ClientTimeout(total=10),
            ) as response:
                text = await response.text()
                if response.status != 200:
                    raise RuntimeError(f"/sql {query!r}: HTTP {response.status}: {text}")
        result: dict[str, Any] = json.loads(text)[0]
        return result

    async def presence(self) -> tuple[PresenceRow, ...]:
        """`SELECT * FROM active_connection` as rows."""
        rows = await self.sql("SELECT * FROM active_connection")
        return tuple(
            PresenceRow(
                json.dumps(row[0], sort_keys=True), json.dumps(row[1], sort_keys=True), str(row[2]), str(row[4])
            )
            for row in rows
        )

    async def heads(self) -> dict[str, tuple[int, int, int]]:
        """`stream_id -> (head_seq, retained_from_seq, epoch)` of every stream on the host."""
        rows = await self.sql("SELECT * FROM stream_head")
        return {str(row[0]): (int(row[1]), int(row[2]), int(row[3])) for row in rows}

    async def call_as_admin(self, reducer: str, *args: Any) -> None:
        """Call a reducer over HTTP with a `sync.admin` token control issued the producer key."""
        async with aiohttp.ClientSession() as http:
            token = await fetch_session_token(
                self.control_public_url,
                self.producer_key,
                ("sync.admin", "sync.subscribe"),
                ("*",),
                None,
                "admin",
                session=http,
            )
            async with http.post(
                f"{self.host_url}/v1/database/{DATABASE}/call/{reducer}",
                json=list(args),
                headers={"Authorization": f"Bearer {token.token}"},
            ) as response:
                text = await response.text()
                if response.status != 200:
                    raise RuntimeError(f"{reducer}{args}: HTTP {response.status}: {text}")

    async def runtime_metric(self, name: str) -> float:
        """Sum of one metric's samples on the runtime's `/metrics` (0 when absent)."""
        async with aiohttp.ClientSession() as http, http.get(f"{self.runtime_url}/metrics") as response:
            text = await response.text()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and (line[len(name)] in " {"):
                total += float(line.rsplit(" ", 1)[-1])
        return total


async def wait_until(what: str, check: Callable[[], Any], within: float, every: float = 0.2) -> float:
    """Poll an async or sync predicate until truthy; returns the seconds it took, TimeoutError naming `what`."""
    started = time.monotonic()
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() - started > within:
            raise TimeoutError(f"timed out after {within:.0f}s waiting for {what}")
        await asyncio.sleep(every)
