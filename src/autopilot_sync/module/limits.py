"""Bounds on every string a reducer stores, and on how deeply a payload nests: one place, one refusal code.

Why here and not in the host: these are reducer checks, so they hold wherever the module runs (our host or a real
SpacetimeDB with the TypeScript twin), and every refusal is the module's typed `invalid_event` rather than an
exception escaping as "reducer panicked" with internal text. The numbers come from `AUTOPILOT_SYNC_MODULE_*`
(`SyncModuleSettings`), read when the host starts the module (its start hook calls `configured_limits`), never at
import: importing the module reads nothing, so a bad variable stops the host's start, not every `import`.
"""

from __future__ import annotations

import functools

from autopilot_sync.contract.canonical import nests_deeper_than
from autopilot_sync.contract.codes import SyncErrorCode
from autopilot_sync.module.errors import SyncError
from autopilot_sync.settings.load import load_settings
from autopilot_sync.settings.sync_module import SyncModuleSettings


@functools.cache
def configured_limits() -> SyncModuleSettings:
    """The limits from the environment, read on first use (the start hook) and kept for the process's life.

    A malformed or unknown `AUTOPILOT_SYNC_MODULE_*` variable prints what is wrong and exits 2 (`load_settings`),
    during the host's start, before it reports ready.
    """
    return load_settings(SyncModuleSettings)


def check_field(name: str, value: str, limit: int) -> None:
    """Refuse an empty field, one over `limit` UTF-8 bytes, or one that is not valid Unicode (a lone surrogate).

    The message names the field and its size, never echoes the value (an 8 MiB id would otherwise travel back).
    """
    if not value:
        raise SyncError(SyncErrorCode.INVALID_EVENT, f"{name} must not be empty")
    if len(value) > limit:  # cheap early answer: every character is at least one byte
        raise SyncError(SyncErrorCode.INVALID_EVENT, f"{name} is over {limit} bytes, the limit")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise SyncError(SyncErrorCode.INVALID_EVENT, f"{name} is not valid UTF-8 text (a lone surrogate)") from None
    if size > limit:
        raise SyncError(SyncErrorCode.INVALID_EVENT, f"{name} is {size} bytes, limit {limit}")


def check_event_fields(limits: SyncModuleSettings, stream_id: str, idempotency_key: str, kind: str) -> None:
    """The string fields of one appended event, each within its configured bound."""
    check_field("stream_id", stream_id, limits.max_stream_id_bytes)
    check_field("idempotency_key", idempotency_key, limits.max_idempotency_key_bytes)
    check_field("kind", kind, limits.max_kind_bytes)


def check_stream_id(limits: SyncModuleSettings, stream_id: str) -> None:
    """A stream id argument of `ack_checkpoint`, `trim_stream` or `reset_stream`."""
    check_field("stream_id", stream_id, limits.max_stream_id_bytes)


def check_payload_depth(canonical: str, limit: int) -> None:
    """Refuse a payload whose arrays/objects nest deeper than `limit`, so every reader can parse what it receives.

    The parsers accept about 1,000 levels; a reader that is already some frames deep would then fail with a
    RecursionError on an event the host accepted.
    """
    if nests_deeper_than(canonical, limit):
        raise SyncError(SyncErrorCode.INVALID_EVENT, f"payload nests deeper than {limit} levels")
