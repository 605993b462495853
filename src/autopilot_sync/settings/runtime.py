"""Settings of the runtime that publishes event streams (`AUTOPILOT_SYNC_RUNTIME_*`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from autopilot_sync.settings.base import ServiceSettings, service_config
from autopilot_sync.settings.fields import BaseUrl, DatabaseName, FilePath, Listen, ListenAddress


class RuntimeSettings(ServiceSettings):
    """The producer: its outbox directory, where it gets tokens, where it publishes, and the key it signs with."""

    model_config = service_config("runtime")

    listen: Listen = Field(
        default=ListenAddress("127.0.0.1", 3200), description="Address of the runtime's API and metrics."
    )
    data_dir: FilePath = Field(default=Path("./var/runtime"), description="Directory of the durable outbox.")
    control_url: BaseUrl = Field(
        default="http://127.0.0.1:3100", description="Base URL of the control service issuing its tokens."
    )
    spacetime_base_url: BaseUrl = Field(
        default="http://127.0.0.1:3000", description="Base URL of the Spacetime host it publishes to."
    )
    database: DatabaseName = Field(default="autopilot-sync", description="Database whose reducers it calls.")
    nostr_key_path: FilePath = Field(
        description="File holding the runtime's Nostr secret key (hex), which proves its identity to control."
    )
