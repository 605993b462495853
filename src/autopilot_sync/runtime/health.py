"""What the runtime depends on, checked at start and then every few seconds: control (a token) and the host (the DB).

Two kinds of trouble, told apart on purpose:
- **misconfiguration** that no waiting will fix — control refuses the runtime's key, the host serves no such
  database — stops the start with one line and exit status 2 (`StartupError`), so a bad deploy fails at once instead
  of dead-lettering every event;
- **an unreachable dependency** (not started yet, restarting, network) is transient: the runtime starts *degraded*,
  keeps accepting appends into its outbox (they are published once the dependency is back), and says so on
  `GET /healthz` (`"status": "degraded"` with the reason per dependency) and in the gauge
  `autopilot_sync_runtime_dependency_up{dependency}`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from autopilot_sync.runtime.metrics import RuntimeMetrics
from autopilot_sync.runtime.retry import FailureKind
from autopilot_sync.runtime.tokens import TokenError, TokenSource

log = logging.getLogger(__name__)

CONTROL = "control"
HOST = "host"
_PROBE_TIMEOUT = aiohttp.ClientTimeout(total=5)


class StartupError(Exception):
    """A misconfiguration found at start: the process prints this one line and exits 2."""


class DependencyState(enum.Enum):
    """How one dependency looked at its last check."""

    UP = "up"
    UNREACHABLE = "unreachable"
    """No answer or a 5xx: transient, the runtime runs degraded and retries."""
    REFUSED = "refused"
    """An answer that says the configuration is wrong (fatal at start; later, degraded until fixed)."""


@dataclass(frozen=True, slots=True)
class Check:
    """One dependency's state and why."""

    state: DependencyState
    detail: str


class RuntimeHealth:
    """The last check of every dependency, mirrored into the metrics registry."""

    def __init__(self, metrics: RuntimeMetrics) -> None:
        self._metrics = metrics
        self.checks: dict[str, Check] = {}

    def record(self, name: str, check: Check, *, announce: bool = True) -> None:
        """Store a check result; log transitions so the operator sees when a dependency comes and goes."""
        before = self.checks.get(name)
        self.checks[name] = check
        self._metrics.dependency_up.labels(dependency=name).set(1 if check.state is DependencyState.UP else 0)
        if announce and (before is None or before.state is not check.state):
            level = logging.INFO if check.state is DependencyState.UP else logging.WARNING
            log.log(level, "%s is %s: %s", name, check.state.value, check.detail)

    @property
    def degraded(self) -> bool:
        """True while any dependency is not up."""
        return any(check.state is not DependencyState.UP for check in self.checks.values())

    def body(self) -> Mapping[str, Any]:
        """The `/healthz` JSON: overall status and each dependency's state and reason."""
        return {
            "status": "degraded" if self.degraded else "ok",
            "dependencies": {
                name: {"state": check.state.value, "detail": check.detail} for name, check in self.checks.items()
            },
        }


async def check_control(tokens: TokenSource) -> Check:
    """Whether control gives the runtime a token (cached while valid, so this costs nothing between refreshes)."""
    try:
        await tokens.token()
    except TokenError as exc:
        refused = exc.failure.kind is FailureKind.TOKEN_REFUSED
        state = DependencyState.REFUSED if refused else DependencyState.UNREACHABLE
        return Check(state, exc.failure.message)
    return Check(DependencyState.UP, f"token from {tokens.control_url}")


async def check_host(http: aiohttp.ClientSession, base_url: str, database: str) -> Check:
    """Whether the host answers and serves `database` (its schema route: public on SpacetimeDB too)."""
    url = f"{base_url}/v1/database/{quote(database, safe='')}/schema?version=9"
    try:
        async with http.get(url, timeout=_PROBE_TIMEOUT) as response:
            status = response.status
            await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Check(DependencyState.UNREACHABLE, f"{base_url} did not answer: {type(exc).__name__}")
    if status == 200:
        return Check(DependencyState.UP, f"{base_url} serves {database}")
    if status in (400, 404):
        return Check(DependencyState.REFUSED, f"{base_url} serves no database {database!r} (HTTP {status})")
    return Check(DependencyState.UNREACHABLE, f"{base_url} answered HTTP {status}")


class DependencyMonitor:
    """Checks control and the host now (fatal misconfiguration raises) and then every `interval` seconds."""

    def __init__(
        self, health: RuntimeHealth, tokens: TokenSource, host_url: str, database: str, interval: float
    ) -> None:
        self.health = health
        self._tokens = tokens
        self._host_url = host_url
        self._database = database
        self._interval = interval
        self._http: aiohttp.ClientSession | None = None

    async def check_once(self, *, announce: bool = True) -> None:
        """Check both dependencies and record the results (logging changes when `announce`)."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        control, host = await asyncio.gather(
            check_control(self._tokens), check_host(self._http, self._host_url, self._database)
        )
        self.health.record(CONTROL, control, announce=announce)
        self.health.record(HOST, host, announce=announce)

    async def start(self) -> None:
        """The start-up check: `StartupError` on misconfiguration, otherwise record (maybe degraded) and go on."""
        await self.check_once(announce=False)
        refused = [check.detail for check in self.health.checks.values() if check.state is DependencyState.REFUSED]
        if refused:
            await self.close()
            raise StartupError("; ".join(refused))
        for name, check in self.health.checks.items():
            if check.state is not DependencyState.UP:
                log.warning("starting degraded: %s is %s: %s", name, check.state.value, check.detail)

    async def run(self) -> None:
        """Re-check forever (cancelled at stop)."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.check_once()
            except Exception:  # a probe must never take the runtime down
                log.exception("dependency check failed")

    async def close(self) -> None:
        """Close the probe's HTTP client."""
        if self._http is not None:
            await self._http.close()
            self._http = None
