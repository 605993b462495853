"""Limits of the canonical sync module (`AUTOPILOT_SYNC_MODULE_*`), read by the host that runs it."""

from __future__ import annotations

from pydantic import Field

from autopilot_sync.settings.base import ServiceSettings, service_config
from autopilot_sync.settings.fields import Count


class SyncModuleSettings(ServiceSettings):
    """Bounds that keep one caller from exhausting the host: payload size and depth, events per call, field sizes."""

    model_config = service_config("module")

    max_payload_bytes: Count = Field(
        default=262144, description="Largest canonical JSON payload of one sync event, in UTF-8 bytes."
    )
    max_batch_events: Count = Field(default=1000, description="Most events one append_sync_events call may carry.")
    max_stream_id_bytes: Count = Field(
        default=256,
        description="Longest stream_id any reducer accepts (appends, checkpoints, trim, reset), in UTF-8 bytes.",
    )
    max_idempotency_key_bytes: Count = Field(
        default=512, description="Longest idempotency_key of one sync event, in UTF-8 bytes."
    )
    max_kind_bytes: Count = Field(default=128, description="Longest kind of one sync event, in UTF-8 bytes.")
    max_payload_depth: Count = Field(
        default=64, description="Deepest nesting of arrays and objects in one sync event's payload."
    )
