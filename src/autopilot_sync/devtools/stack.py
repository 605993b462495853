"""The whole local system as child processes: host, control and runtime wired to each other.

`autopilot-sync up`, the process tests and the benchmarks all need the same wiring — the host trusts control as an
issuer, control allow-lists the runtime's Nostr key for `sync.append`, everyone finds everyone on loopback — so it is
written once here. Ports and directories are fixed per stack, so any service can be killed and restarted in place.

Readers: the stack keeps a pool of demo user keys (`users/`); the runtime makes every one of them a reader of every
stream it publishes, and each desktop config directory gets the next unused pool key, so a desktop reads the
runtime's streams however late it starts. With `policy=True` control runs with a policy file that gives exactly
those users the reader scopes and the runtime the producer scopes on `runtime.*` (what `autopilot-sync up` uses).

The sync metrics exporter (`start_exporter`, started by `up`) has a key of its own under `exporter/`; the host is
told that key's identity is the database owner, so the exporter reads every reader's checkpoint.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from autopilot_sync.desktop.identity import key_path as desktop_key_path
from autopilot_sync.devtools.processes import ServiceProcess, free_port, start_host, start_service
from autopilot_sync.nostr.keyfile import load_secret_key, save_secret_key
from autopilot_sync.nostr.keys import SecretKey
from autopilot_sync.spacetime.identity import identity_from_claims
from autopilot_sync.spacetime.values import Identity

DATABASE = "autopilot-sync"
#: How many demo users (desktop keys) a stack has; each is a reader of every runtime stream.
USER_POOL = 8
#: The streams the runtime publishes (its token's `streams` claim, `runtime/tokens.py`).
RUNTIME_STREAMS = "runtime.*"


def _loopback(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def producer_socket_at(preferred: Path) -> Path:
    """`preferred` when it fits a Unix socket address (about 100 bytes), else a short path derived from it.

    Deterministic, so a restarted runtime and its clients agree on the path; the socket itself is mode 0600.
    """
    if len(str(preferred).encode()) <= 100:
        return preferred
    digest = hashlib.sha256(str(preferred).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"autopilot-sync-{digest}" / "producer.sock"


def runtime_key_at(path: Path, key: SecretKey | None = None) -> SecretKey:
    """The runtime's key stored at `path` (0600), created from `key` or a fresh one on first use."""
    if path.exists():
        return load_secret_key(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    chosen = key or SecretKey.generate()
    save_secret_key(path, chosen)
    return chosen


@dataclass
class LocalStack:
    """Host, control and runtime under `root`, each on its own port."""

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
    host: ServiceProcess | None = None
    control: ServiceProcess | None = None
    runtime: ServiceProcess | None = None
    exporter: ServiceProcess | None = None
    producer_socket: Path = field(init=False)

    def __post_init__(self) -> None:
        self.runtime_key = runtime_key_at(self.key_path, self.runtime_key)
        self.producer_socket = producer_socket_at(self.root / "runtime" / "producer.sock")
        self.user_keys = [runtime_key_at(self.root / "users" / f"user-{i}.key") for i in range(USER_POOL)]
        #: the sync metrics exporter reads as the database owner (docs/security.md "The sync metrics exporter")
        self.exporter_key = runtime_key_at(self.root / "exporter" / "nostr.key")

    def user_key_for(self, config_dir: Path) -> SecretKey:
        """The desktop key in `config_dir`, taken from the user pool (the next unused key) when it has none yet."""
        path = desktop_key_path(config_dir)
        if path.exists():
            return load_secret_key(path)
        used = {load_secret_key(p).public_key().hex for p in self.root.glob("**/nostr.key") if p != self.key_path}
        free = next((key for key in self.user_keys if key.public_key().hex not in used), None)
        if free is None:
            raise RuntimeError(f"every one of the {USER_POOL} demo users already has a desktop under {self.root}")
        return runtime_key_at(path, free)

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
            f'[[grant]]\nkeys = ["{self.exporter_key.public_key().hex}"]\n'
            f'scopes = ["sync.subscribe"]\nstreams = ["{RUNTIME_STREAMS}"]\n'
        )
        path = self.policy_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    @property
    def producer_key(self) -> SecretKey:
        """The runtime's Nostr key (on control's append allowlist)."""
        assert self.runtime_key is not None
        return self.runtime_key

    @property
    def key_path(self) -> Path:
        """Where the runtime's key lives."""
        return self.root / "runtime" / "nostr.key"

    @property
    def host_url(self) -> str:
        """Base URL of the host."""
        return _loopback(self.host_port)

    @property
    def control_url(self) -> str:
        """Base URL of control (also the token issuer the host trusts)."""
        return _loopback(self.control_port)

    @property
    def runtime_url(self) -> str:
        """Base URL of the runtime's producer API."""
        return _loopback(self.runtime_port)

    def start_host(self) -> ServiceProcess:
        """Start (or restart) the host on its port and data directory."""
        env = {
            "AUTOPILOT_SYNC_HOST_TRUSTED_ISSUERS": self.control_url,
            "AUTOPILOT_SYNC_HOST_OWNER_IDENTITY": self.exporter_identity.hex,
            **self.host_env,
        }
        self.host = start_host(self.root / "host", port=self.host_port, env=env)
        return self.host

    def start_control(self) -> ServiceProcess:
        """Start (or restart) control, allow-listing the runtime's key for publishing."""
        env = {
            "AUTOPILOT_SYNC_CONTROL_LISTEN": f"127.0.0.1:{self.control_port}",
            "AUTOPILOT_SYNC_CONTROL_PUBLIC_URL": self.control_url,
            "AUTOPILOT_SYNC_CONTROL_SIGNING_KEY_PATH": str(self.root / "control" / "signing.pem"),
            "AUTOPILOT_SYNC_CONTROL_SPACETIME_BASE_URL": self.host_url,
            **(
                {"AUTOPILOT_SYNC_CONTROL_POLICY_PATH": str(self.write_policy())}
                if self.policy
                else {"AUTOPILOT_SYNC_CONTROL_APPEND_ALLOWLIST": self.producer_key.public_key().hex}
            ),
            **self.control_env,
        }
        self.control = start_service("control", env=env)
        return self.control

    def start_runtime(self, *, wait: bool = True) -> ServiceProcess:
        """Start (or restart) the runtime on its port and outbox directory (`wait` for its ready line)."""
        env = {
            "AUTOPILOT_SYNC_RUNTIME_LISTEN": f"127.0.0.1:{self.runtime_port}",
            "AUTOPILOT_SYNC_RUNTIME_DATA_DIR": str(self.root / "runtime"),
            "AUTOPILOT_SYNC_RUNTIME_CONTROL_URL": self.control_url,
            "AUTOPILOT_SYNC_RUNTIME_SPACETIME_BASE_URL": self.host_url,
            "AUTOPILOT_SYNC_RUNTIME_NOSTR_KEY_PATH": str(self.key_path),
            "AUTOPILOT_SYNC_RUNTIME_PRODUCER_SOCKET": str(self.producer_socket),
            "AUTOPILOT_SYNC_RUNTIME_READERS": ",".join(key.public_key().hex for key in self.user_keys),
            **self.runtime_env,
        }
        self.runtime = start_service("runtime", env=env, wait=wait)
        return self.runtime

    @property
    def exporter_identity(self) -> Identity:
        """The identity control's tokens give the exporter's key: the host's database owner."""
        return identity_from_claims(self.control_url, self.exporter_key.public_key().hex)

    @property
    def exporter_url(self) -> str:
        """Base URL of the sync metrics exporter (`/metrics`, `/healthz`)."""
        return _loopback(self.exporter_port)

    def start_exporter(self) -> ServiceProcess:
        """Start (or restart) the sync metrics exporter, reading as the database owner."""
        env = {
            "AUTOPILOT_SYNC_EXPORTER_LISTEN": f"127.0.0.1:{self.exporter_port}",
            "AUTOPILOT_SYNC_EXPORTER_CONTROL_URL": self.control_url,
            "AUTOPILOT_SYNC_EXPORTER_SPACETIME_BASE_URL": self.host_url,
            "AUTOPILOT_SYNC_EXPORTER_NOSTR_KEY_PATH": str(self.root / "exporter" / "nostr.key"),
        }
        self.exporter = start_service("exporter", env=env)
        return self.exporter

    def start_all(self, *, runtime: bool = True) -> LocalStack:
        """Host, then control, then (optionally) the runtime."""
        self.start_host()
        self.start_control()
        if runtime:
            self.start_runtime()
        return self

    def desktop_env(self, config_dir: Path) -> dict[str, str]:
        """Environment of a desktop that follows this stack (its key, from the user pool, is put in `config_dir`)."""
        self.user_key_for(config_dir)
        return {
            "AUTOPILOT_SYNC_DESKTOP_CONFIG_DIR": str(config_dir),
            "AUTOPILOT_SYNC_DESKTOP_CONTROL_URL": self.control_url,
            "AUTOPILOT_SYNC_DESKTOP_SPACETIME_BASE_URL": self.host_url,
        }

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
