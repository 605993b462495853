"""Real host + real control + real runtime as child processes, on fixed ports so each can be killed and restarted.

Also a reader that checks what the host holds through the client SDK (a one-off query over the WebSocket), the
same way any subscriber would see it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autopilot_sync.client.connection import connect
from autopilot_sync.control.client import fetch_session_token
from autopilot_sync.devtools.processes import ServiceProcess, free_port, start_host, start_service
from autopilot_sync.nostr.keyfile import save_secret_key
from autopilot_sync.nostr.keys import SecretKey

DATABASE = "autopilot-sync"
READER_KEY = SecretKey.generate()


@dataclass
class System:
    """The three services of the publishing path, with the directories and ports that outlive restarts."""

    root: Path
    host_port: int = field(default_factory=free_port)
    control_port: int = field(default_factory=free_port)
    runtime_port: int = field(default_factory=free_port)
    runtime_key: SecretKey = field(default_factory=SecretKey.generate)
    runtime_env_extra: dict[str, str] = field(default_factory=dict)
    host: ServiceProcess | None = None
    control: ServiceProcess | None = None
    runtime: ServiceProcess | None = None

    @property
    def host_url(self) -> str:
        return f"http://127.0.0.1:{self.host_port}"

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    @property
    def runtime_url(self) -> str:
        return f"http://127.0.0.1:{self.runtime_port}"

    @property
    def key_path(self) -> Path:
        return self.root / "runtime" / "nostr.key"

    def start_host(self) -> ServiceProcess:
        self.host = start_host(
            self.root / "host",
            port=self.host_port,
            env={"AUTOPILOT_SYNC_HOST_TRUSTED_ISSUERS": self.control_url},
        )
        return self.host

    def start_control(self) -> ServiceProcess:
        env = {
            "AUTOPILOT_SYNC_CONTROL_LISTEN": f"127.0.0.1:{self.control_port}",
            "AUTOPILOT_SYNC_CONTROL_PUBLIC_URL": self.control_url,
            "AUTOPILOT_SYNC_CONTROL_SIGNING_KEY_PATH": str(self.root / "control" / "signing.pem"),
            "AUTOPILOT_SYNC_CONTROL_SPACETIME_BASE_URL": self.host_url,
            "AUTOPILOT_SYNC_CONTROL_APPEND_ALLOWLIST": self.runtime_key.public_key().hex,
        }
        self.control = start_service("control", env=env)
        return self.control

    def start_runtime(self) -> ServiceProcess:
        if not self.key_path.exists():
            self.key_path.parent.mkdir(parents=True, exist_ok=True)
            save_secret_key(self.key_path, self.runtime_key)
        env = {
            "AUTOPILOT_SYNC_RUNTIME_LISTEN": f"127.0.0.1:{self.runtime_port}",
            "AUTOPILOT_SYNC_RUNTIME_DATA_DIR": str(self.root / "runtime"),
            "AUTOPILOT_SYNC_RUNTIME_CONTROL_URL": self.control_url,
            "AUTOPILOT_SYNC_RUNTIME_SPACETIME_BASE_URL": self.host_url,
            "AUTOPILOT_SYNC_RUNTIME_NOSTR_KEY_PATH": str(self.key_path),
            "AUTOPILOT_SYNC_RUNTIME_RETRY_CAP_SECONDS": "1",
            **self.runtime_env_extra,
        }
        self.runtime = start_service("runtime", env=env)
        return self.runtime

    def start_all(self) -> None:
        self.start_host()
        self.start_control()
        self.start_runtime()

    def stop_all(self) -> None:
        for service in (self.runtime, self.control, self.host):
            if service is not None:
                service.kill()

    def tails(self) -> str:
        return "\n".join(
            f"--- {service.service}\n{service.tail(30)}"
            for service in (self.host, self.control, self.runtime)
            if service is not None
        )


async def host_events(system: System, stream_ids: Sequence[str]) -> dict[str, list[tuple[Any, ...]]]:
    """`(seq, idempotency_key, kind, payload_hash)` of each stream's `sync_event` rows on the host, in seq order."""
    grant = await fetch_session_token(system.control_url, READER_KEY, ("sync.subscribe",), ("*",), None, "test")
    connection = await connect(system.host_url, DATABASE, token=grant.token)
    try:
        found: dict[str, list[tuple[Any, ...]]] = {}
        for stream_id in stream_ids:
            answer = await connection.one_off_query(f"SELECT * FROM sync_event WHERE stream_id = '{stream_id}'")
            rows = [(row[1], row[2], row[3], row[5]) for row in answer.rows("sync_event")]
            found[stream_id] = sorted(rows)
        return found
    finally:
        await connection.close()
