"""Bounds on every string a reducer stores, and on how deeply a payload nests: one place, one refusal code.

Why here and not in the host: these are reducer checks, so they hold wherever the module runs (our host or a real
SpacetimeDB with the TypeScript twin), and every refusal is the module's typed `invalid_event` rather than an
exception escaping as "reducer panicked" with internal text. The numbers live in the module's own `sync_config`
row (`module/config.py`), changed by the database owner with `set_sync_limits`; these functions are pure.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass

from autopilot_sync.contract.canonical import nests_deeper_than
from autopilot_sync.contract.codes import SyncErrorCode
from autopilot_sync.module.errors import SyncError


@dataclass(frozen=True, slots=True)
class SyncLimits:
    """Bounds that keep one caller from exhausting the host: payload size and depth, events per call, field sizes.

    Field order is the column order of `sync_config` and the parameter order of `set_sync_limits`.
    """

    max_payload_bytes: int = 262144
    """Largest canonical JSON payload of one sync event, in UTF-8 bytes."""
    max_batch_events: int = 1000
    """Most events one append_sync_events call may carry."""
    max_stream_id_bytes: int = 256
    """Longest stream_id any reducer accepts (appends, checkpoints, trim, reset), in UTF-8 bytes."""
    max_idempotency_key_bytes: int = 512
    """Longest idempotency_key of one sync event, in UTF-8 bytes."""
    max_kind_bytes: int = 128
    """Longest kind of one sync event, in UTF-8 bytes."""
    max_payload_depth: int = 64
    """Deepest nesting of arrays and objects in one sync event's payload."""

    def as_tuple(self) -> tuple[int, ...]:
        """The limits in column order."""
        return astuple(self)


#: What a fresh database (and one upgraded from before `sync_config`) starts with.
DEFAULT_LIMITS = SyncLimits()


def check_field(name: str, value: str, limit: int) -> None:
    """Refuse an empty field, one over `limit` UTF-8 bytes, or one that is not valid Unicode (a lone surrogate).

    The message names the field and its size, never echoes the value (an 8 MiB id would otherwise travel back).
    """
    if not value:
        raise SyncError(SyncErrorCode.INVALID_EVENT, f"{name} must not be empty")
    if len(value) > limit:  # cheap early answer: every character is at least one byte
        raise SyncError(SyncErrorCode.INVALID_EVENT, f"{name} is over {limit} bytes, the limit")
    if value.isascii():  # a flag the string carries: one byte per character, nothing to encode or refuse
        return
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise SyncError(SyncErrorCode.INVALID_EVENT, f"{name} is not valid UTF-8 text (a lone surrogate)") from None
    if size > limit:
        raise SyncError(SyncErrorCode.INVALID_EVENT, f"{name} is {size} bytes, limit {limit}")


def check_event_fields(limits: SyncLimits, stream_id: str, idempotency_key: str, kind: str) -> None:
    """The string fields of one appended event, each within its configured bound."""
    check_field("stream_id", stream_id, limits.max_stream_id_bytes)
    check_field("idempotency_key", idempotency_key, limits.max_idempotency_key_bytes)
    check_field("kind", kind, limits.max_kind_bytes)


def check_stream_id(limits: SyncLimits, stream_id: str) -> None:
    """A stream id argument of `ack_checkpoint`, `trim_stream` or `reset_stream`."""
    check_field("stream_id", stream_id, limits.max_stream_id_bytes)


def check_payload_depth(canonical: str, limit: int) -> None:
    """Refuse a payload whose arrays/objects nest deeper than `limit`, so every reader can parse what it receives.

    The parsers accept about 1,000 levels; a reader that is already some frames deep would then fail with a
    RecursionError on an event the host accepted.
    """
    if nests_deeper_than(canonical, limit):
        raise SyncError(SyncErrorCode.INVALID_EVENT, f"payload nests deeper than {limit} levels")
