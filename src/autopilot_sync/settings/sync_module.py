"""Limits of the canonical sync module (`AUTOPILOT_SYNC_MODULE_*`), read by the host that runs it."""

from __future__ import annotations

from pydantic import Field

from autopilot_sync.settings.base import ServiceSettings, service_config
from autopilot_sync.settings.fields import Count


class SyncModuleSettings(ServiceSettings):
    """Bounds that keep one producer from exhausting the host: payload size and events per call."""

    model_config = service_config("module")

    max_payload_bytes: Count = Field(
        default=262144, description="Largest canonical JSON payload of one sync event, in UTF-8 bytes."
    )
    max_batch_events: Count = Field(default=1000, description="Most events one append_sync_events call may carry.")
