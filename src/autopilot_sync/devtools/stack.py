"""The whole local system as child processes: host, control and runtime wired to each other — the one wiring.

`autopilot-sync up`, the process tests, the chaos suite (`verification/stack.py`) and the benchmarks all need the
same wiring — the host trusts control as an issuer, control allow-lists the runtime's Nostr key for `sync.append`,
everyone finds everyone on loopback — so it is written once here, and each service's environment is built from its
settings class's fields (`settings/environment.py`), never spelled by hand. Ports and directories are fixed per
stack, so any service can be killed and restarted in place.

Routes: by default every caller reaches every service at the service's own address. A `route` hook may send a
caller's traffic to a service through something else (the chaos suite puts a fault proxy, `verification/proxy.py`,
on each pair); the stack only asks the hook for URLs, so devtools never imports verification. Control signs its
public URL into every proof check and token, so all callers reach control at one URL (`control_public_url`).

Readers: the stack keeps a pool of demo user keys (`users/`); the runtime makes every one of them (or the `readers`
given) a reader of every stream it publishes, and each desktop config directory gets the next unused pool key, so a
desktop reads the runtime's streams however late it starts. With `policy=True` control runs with a policy file that
gives exactly those users the reader scopes and the runtime the producer scopes on `runtime.*` (what `up` uses).

The sync metrics exporter (`start_exporter`, started by `up`) has a key of its own under `exporter/`; the host is
told that key's identity is an observer (reads every row, calls nothing as the owner), so the exporter reads every
reader's checkpoint. The database owner is another key (`owner_key`, under `owner/`), which no service runs with; as
the owner, the stack names control as the sync module's trusted token issuer (`trust_control`, run by `start_all`
and `up`), as a deployment to SpacetimeDB must (docs/security.md "The trusted issuer").
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from autopilot_sync.control.client import fetch_session_token
from autopilot_sync.desktop.identity import key_path as desktop_key_path
from autopilot_sync.devtools.processes import ServiceProcess, free_port, start_service
from autopilot_sync.devtools.trust import call_set_trusted_issuer
from autopilot_sync.nostr.keyfile import load_or_create_secret_key, load_secret_key
from autopilot_sync.nostr.keys import SecretKey
from autopilot_sync.settings.control import ControlSettings
from autopilot_sync.settings.desktop import DesktopSettings
from autopilot_sync.settings.environment import service_environment
from autopilot_sync.settings.exporter import ExporterSettings
from autopilot_sync.settings.fields import ListenAddress
from autopilot_sync.settings.host import HostSettings
from autopilot_sync.settings.runtime import RuntimeSettings
from autopilot_sync.spacetime.identity import identity_from_claims
from autopilot_sync.spacetime.values import Identity

DATABASE = "autopilot-sync"
#: The module every stack's host serves.
MODULE = "autopilot_sync.module"
#: How many demo users (desktop keys) a stack has; each is a reader of every runtime stream.
USER_POOL = 8
#: The streams the runtime publishes (its token's `streams` claim, `runtime/tokens.py`).
RUNTIME_STREAMS = "runtime.*"
LOOPBACK = "127.0.0.1"

Route = Callable[[str, str], "str | None"]
"""`(caller, service) -> URL` the caller must use for the service (e.g. a fault proxy's), or None for its own URL.

Callers are `host`, `control`, `runtime`, `desktop` and `public` (control's one public URL); services are `host`
and `control`."""


def _loopback(port: int) -> str:
    return f"http://{LOOPBACK}:{port}"


def producer_socket_at(preferred: Path) -> Path:
    """`preferred` when it fits a Unix socket address (about 100 bytes), else a short path derived from it.

    Deterministic, so a restarted runtime and its clients agree on the path; the socket itself is mode 0600.
    """
    if len(str(preferred).encode()) <= 100:
        return preferred
    digest = hashlib.sha256(str(preferred).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"autopilot-sync-{digest}" / "producer.sock"


@dataclass
class LocalStack:
    """Host, control and runtime under `root`, each on its own port.

    `host_env`, `control_env` and `runtime_env` are extra variables applied last (tests use them to set a value, even
    a malformed one on purpose); `log_level` is passed to every service started; `route` is described above.
    """

    root: Path
    host_port: int = field(default_factory=free_port)
    control_port: int = field(default_factory=free_port)
    runtime_port: int = field(default_factory=free_port)
    exporter_port: int = field(default_factory=free_port)
    runtime_key: SecretKey | None = None
    host_env: dict[str, str] = field(default_factory=dict)
    control_env: dict[str, str] = field(default_factory=dict)
    runtime_env: dict[str, str] = field(default_factory=dict)
    #: run control with a policy file for the runtime and the demo users (else: any key may read, see docs/control.md)
    policy: bool = False
    #: hex public keys the runtime makes readers of its streams (default: the demo users)
    readers: Sequence[str] | None = None
    route: Route | None = None
    log_level: str | None = None
    #: the module the host serves: a dotted Python path, or a built TypeScript module file (`PATH.js`)
    module: str = MODULE
    host: ServiceProcess | None = None
    control: ServiceProcess | None = None
    runtime: ServiceProcess | None = None
    exporter: ServiceProcess | None = None
    producer_socket: Path = field(init=False)

    def __post_init__(self) -> None:
        self.runtime_key = load_or_create_secret_key(self.key_path, self.runtime_key).secret
        self.producer_socket = producer_socket_at(self.root / "runtime" / "producer.sock")
        self.user_keys = [
            load_or_create_secret_key(self.root / "users" / f"user-{i}.key").secret for i in range(USER_POOL)
        ]
        #: the sync metrics exporter reads as an observer (docs/security.md "The sync metrics exporter")
        self.exporter_key = load_or_create_secret_key(self.root / "exporter" / "nostr.key").secret
        #: the database owner (an operator's key: publishes, changes the module's limits, names the trusted issuer);
        #: nothing runs with it. A test may make another key the owner by assigning it before the host starts.
        self.owner_key = load_or_create_secret_key(self.root / "owner" / "nostr.key").secret

    # ----- keys -----

    @property
    def producer_key(self) -> SecretKey:
        """The runtime's Nostr key (on control's append allowlist)."""
        assert self.runtime_key is not None
        return self.runtime_key

    @property
    def key_path(self) -> Path:
        """Where the runtime's key lives."""
        return self.root / "runtime" / "nostr.key"

    def user_key_for(self, config_dir: Path) -> SecretKey:
        """The desktop key in `config_dir`, taken from the user pool (the next unused key) when it has none yet."""
        path = desktop_key_path(config_dir)
        if path.exists():
            return load_secret_key(path)
        used = {load_secret_key(p).public_key().hex for p in self.root.glob("**/nostr.key") if p != self.key_path}
        free = next((key for key in self.user_keys if key.public_key().hex not in used), None)
        if free is None:
            raise RuntimeError(f"every one of the {USER_POOL} demo users already has a desktop under {self.root}")
        return load_or_create_secret_key(path, free).secret

    def reader_keys(self) -> list[str]:
        """The hex public keys the runtime makes readers of every stream it publishes."""
        if self.readers is not None:
            return list(self.readers)
        return [key.public_key().hex for key in self.user_keys]

    def policy_path(self) -> Path:
        """Control's policy file (written by `start_control` when `policy` is set)."""
        return self.root / "control" / "policy.toml"

    def write_policy(self) -> Path:
        """Users read and report checkpoints on runtime streams; the runtime publishes, grants and trims there."""
        users = ", ".join(f'"{key.public_key().hex}"' for key in self.user_keys)
        text = (
            "# written by autopilot-sync's local stack (docs/control.md)\n"
            f"[groups]\nusers = [{users}]\n\n"
            '[[grant]]\ngroups = ["users"]\n'
            f'scopes = ["sync.subscribe", "sync.checkpoint.write"]\nstreams = ["{RUNTIME_STREAMS}"]\n\n'
            f'[[grant]]\nkeys = ["{self.producer_key.public_key().hex}"]\n'
            f'scopes = ["sync.append", "sync.admin", "sync.subscribe"]\nstreams = ["{RUNTIME_STREAMS}"]\n\n'
            f'[[grant]]\nkeys = ["{self.exporter_key.public_key().hex}", "{self.owner_key.public_key().hex}"]\n'
            f'scopes = ["sync.subscribe"]\nstreams = ["{RUNTIME_STREAMS}"]\n'
        )
        path = self.policy_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    # ----- addresses -----

    @property
    def host_url(self) -> str:
        """Base URL of the host (its own address, never routed)."""
        return _loopback(self.host_port)

    @property
    def control_url(self) -> str:
        """Base URL of control as everyone reaches it (its public URL: also the token issuer the host trusts)."""
        return self.control_public_url

    @property
    def control_public_url(self) -> str:
        """Control's one public URL: every caller reaches control there, and control signs it into proofs and tokens."""
        return self.reach("public", "control")

    @property
    def runtime_url(self) -> str:
        """Base URL of the runtime's producer API."""
        return _loopback(self.runtime_port)

    def reach(self, caller: str, service: str) -> str:
        """The URL `caller` uses for `service`: the route hook's, else the service's own loopback address."""
        routed = self.route(caller, service) if self.route is not None else None
        if routed:
            return routed
        ports = {"host": self.host_port, "control": self.control_port, "runtime": self.runtime_port}
        return _loopback(ports[service])

    # ----- each service's environment, from its settings fields -----

    def host_environment(self, *, data_dir: Path | None = None, port: int | None = None) -> dict[str, str]:
        """The host's environment (another data directory or port for a second host trusting the same control)."""
        fields: Mapping[str, object] = {
            "listen": ListenAddress(LOOPBACK, port or self.host_port),
            "data_dir": data_dir or self.root / "host",
            "module": self.module,
            "database": DATABASE,
            "trusted_issuers": (self.control_public_url,),
            "owner_identity": self.owner_identity.hex,
            "observer_identities": (self.exporter_identity.hex,),
        }
        return {**service_environment(HostSettings, fields), **self.host_env}

    def control_environment(self) -> dict[str, str]:
        """Control's environment: its public URL, its signing key, and the runtime's key as producer."""
        fields: dict[str, object] = {
            "listen": ListenAddress(LOOPBACK, self.control_port),
            "public_url": self.control_public_url,
            "signing_key_path": self.root / "control" / "signing.pem",
            "spacetime_base_url": self.reach("control", "host"),
        }
        if self.policy:
            fields["policy_path"] = self.write_policy()
        else:
            fields["append_allowlist"] = (self.producer_key.public_key().hex,)
        return {**service_environment(ControlSettings, fields), **self.control_env}

    def runtime_environment(self) -> dict[str, str]:
        """The runtime's environment: its port, outbox, key, producer socket, and the readers of its streams."""
        fields: Mapping[str, object] = {
            "listen": ListenAddress(LOOPBACK, self.runtime_port),
            "data_dir": self.root / "runtime",
            "control_url": self.control_public_url,
            "spacetime_base_url": self.reach("runtime", "host"),
            "nostr_key_path": self.key_path,
            "producer_socket": self.producer_socket,
            "readers": tuple(self.reader_keys()),
        }
        return {**service_environment(RuntimeSettings, fields), **self.runtime_env}

    def desktop_env(
        self, config_dir: Path, key: SecretKey | None = None, extra: Mapping[str, object] | None = None
    ) -> dict[str, str]:
        """Environment of a desktop that follows this stack: its key (`key`, else the next demo user) is put in
        `config_dir`; `extra` sets more `DesktopSettings` fields (e.g. `streams`)."""
        if key is None:
            self.user_key_for(config_dir)
        else:
            load_or_create_secret_key(desktop_key_path(config_dir), key)
        fields: Mapping[str, object] = {
            "config_dir": config_dir,
            "control_url": self.control_public_url,
            "spacetime_base_url": self.reach("desktop", "host"),
            **(extra or {}),
        }
        return service_environment(DesktopSettings, fields)

    # ----- processes -----

    def service_args(self) -> list[str]:
        """Command-line arguments every service gets (the log level, when set)."""
        return ["--log-level", self.log_level] if self.log_level else []

    def start_host(self, *, timeout: float = 30.0) -> ServiceProcess:
        """Start (or restart) the host on its port and data directory."""
        self.host = start_service("host", self.service_args(), env=self.host_environment(), timeout=timeout)
        return self.host

    def start_control(self) -> ServiceProcess:
        """Start (or restart) control, allow-listing the runtime's key for publishing."""
        self.control = start_service("control", self.service_args(), env=self.control_environment())
        return self.control

    def start_runtime(self, *, wait: bool = True) -> ServiceProcess:
        """Start (or restart) the runtime on its port and outbox directory (`wait` for its ready line)."""
        self.runtime = start_service("runtime", self.service_args(), env=self.runtime_environment(), wait=wait)
        return self.runtime

    @property
    def owner_identity(self) -> Identity:
        """The identity control's tokens give the owner's key: the host's database owner."""
        return identity_from_claims(self.control_public_url, self.owner_key.public_key().hex)

    @property
    def exporter_identity(self) -> Identity:
        """The identity control's tokens give the exporter's key: one of the host's read-only observers."""
        return identity_from_claims(self.control_public_url, self.exporter_key.public_key().hex)

    @property
    def exporter_url(self) -> str:
        """Base URL of the sync metrics exporter (`/metrics`, `/healthz`)."""
        return _loopback(self.exporter_port)

    def exporter_environment(self) -> dict[str, str]:
        """The sync metrics exporter's environment: its port and key, reading the host as an observer."""
        fields: Mapping[str, object] = {
            "listen": ListenAddress(LOOPBACK, self.exporter_port),
            "control_url": self.control_public_url,
            "spacetime_base_url": self.reach("exporter", "host"),
            "database": DATABASE,
            "nostr_key_path": self.root / "exporter" / "nostr.key",
        }
        return service_environment(ExporterSettings, fields)

    def start_exporter(self) -> ServiceProcess:
        """Start (or restart) the sync metrics exporter, reading as an observer."""
        self.exporter = start_service("exporter", self.service_args(), env=self.exporter_environment())
        return self.exporter

    def start_all(self, *, runtime: bool = True) -> LocalStack:
        """Host, then control, then (optionally) the runtime; if one fails, those already started are stopped.

        Callers usually enter their `try`/`finally` only after this returns, so a half-started stack would otherwise
        leave its first services running after the caller has failed.
        """
        try:
            self.start_host()
            self.start_control()
            self.trust_control()
            if runtime:
                self.start_runtime()
        except BaseException:
            self.stop_all(kill=True)
            raise
        return self

    def services(self) -> list[ServiceProcess]:
        """The started services, in start order."""
        return [s for s in (self.host, self.control, self.runtime, self.exporter) if s is not None]

    def stop_all(self, *, kill: bool = False) -> None:
        """Stop in reverse start order (SIGKILL with `kill`)."""
        for service in reversed(self.services()):
            if kill:
                service.kill()
            else:
                service.stop(timeout=5)

    def tails(self, lines: int = 30) -> str:
        """The last output lines of every service, for assertion messages."""
        return "\n".join(f"--- {s.service}\n{s.tail(lines)}" for s in self.services())

    # ----- the owner's configuration of the sync module -----

    def trust_control(self, host_url: str | None = None) -> None:
        """Name control as the sync module's trusted issuer, calling `set_trusted_issuer` as the owner (`owner_key`).

        A real SpacetimeDB accepts tokens from any OIDC issuer, so the module refuses claims from any issuer but the
        one its owner named; the local stack names its control service, as a deployment does once after publishing.
        Until it does, the module refuses every claim (it fails closed), so whatever starts a fresh data directory
        calls this before any client (`host_url`: another host than the stack's own, e.g. a bench's second host).
        Blocking (it runs the call on a worker thread's own event loop), like starting a service. RuntimeError when
        the host refuses.
        """
        with ThreadPoolExecutor(max_workers=1) as worker:
            worker.submit(asyncio.run, self.trust_control_async(host_url)).result()

    async def trust_control_async(self, host_url: str | None = None) -> None:
        """`trust_control` for a caller already on an event loop (the chaos stack, whose proxies share its loop)."""
        token = await fetch_session_token(
            self.control_public_url, self.owner_key, ("sync.subscribe",), None, None, "owner"
        )
        await call_set_trusted_issuer(host_url or self.host_url, DATABASE, token.token, self.control_public_url)

    # ----- test helpers over the real routes -----

    async def grant_readers(self, stream_id: str, readers: Iterable[SecretKey] | None = None) -> None:
        """Make `readers` (default: the demo users) readers of `stream_id`, with a token control issues the producer
        key, over the host's HTTP reducer route — as the runtime does for its own streams, since a stream's events
        and head are visible only to its readers (docs/security.md). Raises RuntimeError when the host refuses."""
        keys = list(self.user_keys if readers is None else readers)
        token = await fetch_session_token(
            self.control_public_url, self.producer_key, ("sync.append",), (stream_id,), None, "test"
        )
        identities = [
            {"__identity__": "0x" + identity_from_claims(token.issuer, key.public_key().hex).hex} for key in keys
        ]
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{self.host_url}/v1/database/{DATABASE}/call/grant_stream_readers",
                json=[stream_id, identities],
                headers={"Authorization": f"Bearer {token.token}"},
            ) as response,
        ):
            if response.status != 200:
                raise RuntimeError(
                    f"grant_stream_readers({stream_id!r}): HTTP {response.status}: {await response.text()}"
                )
