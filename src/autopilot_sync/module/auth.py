"""Authorization from verified token claims: scopes, stream patterns and the Nostr key a signature proved.

Reducers never trust arguments for any of this: the host verified the token's signature (its own key or a trusted
OIDC issuer such as the control service) before the claims reach `ctx.claims`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from autopilot_sync.contract.codes import SyncErrorCode
from autopilot_sync.contract.scopes import Scope, scopes_of, stream_allowed
from autopilot_sync.module.errors import SyncError
from autopilot_sync.nostr.errors import NostrKeyError
from autopilot_sync.nostr.keys import PublicKey

_HEX_PUBKEY = re.compile(r"[0-9a-f]{64}")


def require_scope(claims: Mapping[str, Any], scope: Scope, action: str) -> None:
    """Raise `unauthorized` unless the claims grant `scope`."""
    if scope.value not in scopes_of(claims):
        raise SyncError(SyncErrorCode.UNAUTHORIZED, f"{action} needs scope {scope.value}")


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
