"""Settings of the desktop client (`AUTOPILOT_SYNC_DESKTOP_*`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from autopilot_sync.settings.base import ServiceSettings, service_config
from autopilot_sync.settings.fields import BaseUrl, DatabaseName, FilePath, Names, Seconds


class DesktopSettings(ServiceSettings):
    """The desktop app: where it gets tokens and subscribes, where it keeps keys and checkpoints, what it follows."""

    model_config = service_config("desktop")

    control_url: BaseUrl = Field(
        default="http://127.0.0.1:3100", description="Base URL of the control service issuing its tokens."
    )
    spacetime_base_url: BaseUrl = Field(
        default="http://127.0.0.1:3000", description="Base URL of the Spacetime host it subscribes to."
    )
    database: DatabaseName = Field(default="autopilot-sync", description="Database it subscribes to.")
    config_dir: FilePath = Field(
        default=Path("~/.config/autopilot-sync"), description="Directory of the user's key and stream checkpoints."
    )
    streams: Names = Field(default=(), description="Stream ids to follow; empty follows every stream.")
    ack_interval_seconds: Seconds = Field(
        default=1, description="Least time between two checkpoint reports (ack_checkpoint) of one stream."
    )
    reconnect_max_delay_seconds: Seconds = Field(
        default=30, description="Longest wait between reconnect attempts (full-jitter backoff up to this cap)."
    )
