"""Authorization from verified token claims: scopes, stream patterns and the Nostr key a signature proved.

Reducers never trust arguments for any of this: the host verified the token's signature (its own key or a trusted
OIDC issuer such as the control service) before the claims reach `ctx.claims`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Any

from autopilot_sync.module.errors import SyncError, SyncErrorCode
from autopilot_sync.nostr.errors import NostrKeyError
from autopilot_sync.nostr.keys import PublicKey

_HEX_PUBKEY = re.compile(r"[0-9a-f]{64}")


class Scope(enum.Enum):
    """What a session token may do."""

    SUBSCRIBE = "sync.subscribe"
    APPEND = "sync.append"
    CHECKPOINT_WRITE = "sync.checkpoint.write"
    ADMIN = "sync.admin"


def scopes_of(claims: Mapping[str, Any]) -> frozenset[str]:
    """Scopes from the `scopes` claim (array or space-separated), falling back to OAuth's `scope`."""
    raw = claims.get("scopes", claims.get("scope"))
    if isinstance(raw, str):
        return frozenset(raw.split())
    if isinstance(raw, list | tuple):
        return frozenset(str(item) for item in raw)
    return frozenset()


def require_scope(claims: Mapping[str, Any], scope: Scope, action: str) -> None:
    """Raise `unauthorized` unless the claims grant `scope`."""
    if scope.value not in scopes_of(claims):
        raise SyncError(SyncErrorCode.UNAUTHORIZED, f"{action} needs scope {scope.value}")


def stream_allowed(claims: Mapping[str, Any], stream_id: str) -> bool:
    """Whether the `streams` claim covers a stream: exact ids, `prefix*` patterns or `*` (absent = all streams)."""
    patterns = claims.get("streams")
    if patterns is None:
        return True
    if isinstance(patterns, str):
        patterns = [patterns]
    for pattern in patterns:
        text = str(pattern)
        if text == "*" or text == stream_id or (text.endswith("*") and stream_id.startswith(text[:-1])):
            return True
    return False


def require_stream(claims: Mapping[str, Any], stream_id: str) -> None:
    """Raise `forbidden_stream` unless the claims cover `stream_id`."""
    if not stream_allowed(claims, stream_id):
        raise SyncError(SyncErrorCode.FORBIDDEN_STREAM, f"token does not cover stream {stream_id}")


def nostr_pubkey_of(claims: Mapping[str, Any]) -> PublicKey | None:
    """The Nostr key a control-issued token carries as its subject (None for other tokens or a non-key subject)."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not _HEX_PUBKEY.fullmatch(subject):
        return None
    try:
        return PublicKey.from_hex(subject)
    except NostrKeyError:
        return None
