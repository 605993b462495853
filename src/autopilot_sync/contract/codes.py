"""Error codes the sync module's reducers fail with, one closed set shared by everyone who reads them.

Every reducer error message starts with `<code>: ` so clients classify failures without parsing prose; the SDK's typed
results, the runtime's retry classes and the desktop's recovery paths switch on these codes. Documented in
docs/protocol.md. Here, not in `module/`, so a reader of the codes never loads the module.
"""

from __future__ import annotations

import enum


class SyncErrorCode(enum.Enum):
    """Why a sync reducer refused a call."""

    UNAUTHORIZED = "unauthorized"
    """The caller's token lacks the scope this reducer needs (or has no scopes at all, e.g. anonymous)."""
    FORBIDDEN_STREAM = "forbidden_stream"
    """The token's `streams` claim does not cover this stream."""
    INVALID_EVENT = "invalid_event"
    """A field is empty, too long or malformed (stream id, key, kind; payload not JSON, not UTF-8, too deep)."""
    PAYLOAD_HASH_MISMATCH = "payload_hash_mismatch"
    """`payload_hash` is not the sha256 of the canonical payload."""
    PAYLOAD_TOO_LARGE = "payload_too_large"
    """The canonical payload exceeds the configured limit."""
    BATCH_TOO_LARGE = "batch_too_large"
    """More events in one call than the configured limit."""
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    """The idempotency key was already committed on this stream with a different payload hash."""
    SEQUENCE_CONFLICT = "sequence_conflict"
    """`expected_seq` is not `head_seq + 1`; the message carries both numbers."""
    UNKNOWN_STREAM = "unknown_stream"
    """The stream does not exist (nothing was ever appended to it)."""
    CHECKPOINT_BEYOND_HEAD = "checkpoint_beyond_head"
    """A checkpoint past the stream's head."""
    CHECKPOINT_REGRESSION = "checkpoint_regression"
    """A checkpoint lower than the one already recorded."""
    INVALID_TRIM = "invalid_trim"
    """A retention floor beyond `head_seq + 1` or below the current floor."""
    INVALID_LIMITS = "invalid_limits"
    """`set_sync_limits` with a limit below 1, `set_sync_retention` running more often than every 0.1 s, or
    `set_trusted_issuer` with an issuer over 512 bytes."""
    ISSUER_NOT_CONFIGURED = "issuer_not_configured"
    """The database trusts no token issuer yet, so no claim counts: its owner calls `set_trusted_issuer` (a fresh or
    reset database until then). Transient for a producer: the call succeeds once the owner named the issuer."""


def parse_error_code(message: str) -> SyncErrorCode | None:
    """The code at the start of a reducer error message, if it is one of ours."""
    head = message.split(":", 1)[0].strip()
    try:
        return SyncErrorCode(head)
    except ValueError:
        return None
