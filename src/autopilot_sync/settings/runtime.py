"""Settings of the runtime that publishes event streams (`AUTOPILOT_SYNC_RUNTIME_*`)."""

from __future__ import annotations

from pathlib import Path

from autopilot_sync.settings.base import Kind, ServiceSettings, setting
from autopilot_sync.settings.fields import (
    BaseUrl,
    Count,
    DatabaseName,
    FilePath,
    HexPubkeys,
    Listen,
    ListenAddress,
    Seconds,
)

#: Longest Unix socket path the kernel binds (`sun_path` is 108 bytes on Linux, with its terminating NUL).
MAX_SOCKET_PATH_BYTES = 107


def _socket_path(value: object) -> Path | None:
    """Empty means no socket; a path must fit in `sun_path`, checked here so a bad one fails at start."""
    if value is None or value == "":
        return None
    path = Path(str(value)).expanduser()
    if len(str(path).encode()) > MAX_SOCKET_PATH_BYTES:
        raise ValueError(f"a Unix socket path is at most {MAX_SOCKET_PATH_BYTES} bytes")
    return path


OptionalSocketPath: Kind[Path | None] = Kind("filesystem path (at most 107 bytes), or empty for none", _socket_path)


class RuntimeSettings(ServiceSettings, service="runtime"):
    """The producer: its outbox directory, where it gets tokens, where it publishes, and the key it signs with."""

    listen: ListenAddress = setting(
        Listen, default=ListenAddress("127.0.0.1", 3200), description="Address of the runtime's API and metrics."
    )
    producer_socket: Path | None = setting(
        OptionalSocketPath,
        default=None,
        description="Unix socket (created mode 0600) where local producers and tools use the API without a token; "
        "empty for none. Over TCP every route but /healthz and /metrics needs a bearer token from control.",
    )
    data_dir: Path = setting(FilePath, default=Path("./var/runtime"), description="Directory of the durable outbox.")
    control_url: str = setting(
        BaseUrl, default="http://127.0.0.1:3100", description="Base URL of the control service issuing its tokens."
    )
    spacetime_base_url: str = setting(
        BaseUrl, default="http://127.0.0.1:3000", description="Base URL of the Spacetime host it publishes to."
    )
    database: str = setting(
        DatabaseName,
        default="autopilot-sync",
        description="Database whose reducers it calls; a bearer token on the producer API must name it in `aud` "
        "(the host's audience rule).",
    )
    nostr_key_path: Path = setting(
        FilePath, description="File holding the runtime's Nostr secret key (hex), which proves its identity to control."
    )
    readers: tuple[str, ...] = setting(
        HexPubkeys,
        default=(),
        description="Nostr public keys made readers of every stream this runtime publishes (it is one itself); "
        "a stream's readers are recorded when the runtime first publishes to it (docs/runtime.md).",
    )
    publish_batch_size: int = setting(
        Count,
        default=100,
        description="Most events one append_sync_events call carries; at most the module's max_batch_events.",
    )
    publish_call_max_events: int = setting(
        Count,
        default=1000,
        description="Most events one append_sync_events call carries when it joins concurrent streams' batches "
        '(docs/runtime.md "Coalescing"); at most the module\'s max_batch_events.',
    )
    max_payload_bytes: int = setting(
        Count,
        default=262144,
        description="Largest canonical JSON payload accepted at append time; match the module's max_payload_bytes.",
    )
    token_ttl_seconds: int = setting(
        Seconds, default=300, description="Lifetime of the session tokens the runtime asks control for."
    )
    health_check_seconds: int = setting(
        Seconds,
        default=5,
        description="How often the runtime re-checks control and the host (GET /healthz, dependency_up).",
    )
    retry_cap_seconds: int = setting(
        Seconds,
        default=5,
        description="Longest delay between two publish attempts of one stream (full-jitter backoff cap).",
    )
