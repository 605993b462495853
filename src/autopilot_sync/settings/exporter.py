"""Settings of the sync metrics exporter (`AUTOPILOT_SYNC_EXPORTER_*`)."""

from __future__ import annotations

from pathlib import Path

from autopilot_sync.settings.base import ServiceSettings, setting
from autopilot_sync.settings.fields import BaseUrl, DatabaseName, FilePath, Listen, ListenAddress


class ExporterSettings(ServiceSettings, service="exporter"):
    """The exporter: where it serves /metrics, which host and database it reads, and the key it reads as."""

    listen: ListenAddress = setting(
        Listen, default=ListenAddress("127.0.0.1", 3400), description="Address of the exporter's /metrics and /healthz."
    )
    control_url: str = setting(
        BaseUrl, default="http://127.0.0.1:3100", description="Base URL of the control service issuing its tokens."
    )
    spacetime_base_url: str = setting(
        BaseUrl,
        default="http://127.0.0.1:3000",
        description="Base URL of the Spacetime host (ours or a real SpacetimeDB).",
    )
    database: str = setting(DatabaseName, default="autopilot-sync", description="Database whose sync tables it reads.")
    nostr_key_path: Path = setting(
        FilePath,
        description="File holding the exporter's Nostr secret key (hex, created 0600 on first use); its identity "
        "must be the database owner (`autopilot-sync exporter identity` prints it), docs/security.md.",
    )
