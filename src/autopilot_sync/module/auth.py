"""Authorization from verified token claims: scopes, stream patterns and the Nostr key a signature proved.

Reducers never trust arguments for any of this: the host verified the token's signature (its own key or a trusted
OIDC issuer such as the control service) before the claims reach `ctx.claims`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from autopilot_sync.bindings.context import ReducerContext
from autopilot_sync.contract.codes import SyncErrorCode
from autopilot_sync.contract.scopes import Scope, scopes_of, stream_allowed
from autopilot_sync.module.config import config_row
from autopilot_sync.module.errors import SyncError
from autopilot_sync.nostr.errors import NostrKeyError
from autopilot_sync.nostr.keys import PublicKey
from autopilot_sync.sync_bindings import SyncConfig

_HEX_PUBKEY = re.compile(r"[0-9a-f]{64}")

#: The refusal of every claim-bearing call while the database trusts no issuer (the same text in the twin).
NO_ISSUER_YET = "this database trusts no token issuer yet: the owner calls set_trusted_issuer"


def require_trusted_issuer(ctx: ReducerContext) -> SyncConfig | None:
    """Raise unless the owner named a trusted issuer and the caller's token is from it (fail closed).

    Why in the module: a real SpacetimeDB running the TypeScript twin accepts tokens from any OIDC issuer, so a
    `scopes` claim proves nothing until the module knows who signed it (docs/security.md "The trusted issuer").
    While no issuer is named (a fresh or reset database) every claim-bearing call gets `issuer_not_configured`,
    naming the fix; a token of another issuer gets `unauthorized`. Returns the configuration row it read, so a
    reducer that also needs its limits reads the row once per call.
    """
    return check_trusted_issuer(ctx, config_row(ctx))


def check_trusted_issuer(ctx: ReducerContext, config: SyncConfig | None) -> SyncConfig | None:
    """`require_trusted_issuer` against a configuration row the caller has already read (`client_connected` reads
    it once for both the owner test and this, at every connect)."""
    trusted = "" if config is None else config.trusted_issuer
    if not trusted:
        raise SyncError(SyncErrorCode.ISSUER_NOT_CONFIGURED, NO_ISSUER_YET)
    issuer = ctx.claims.get("iss")
    if issuer != trusted:
        shown = issuer[:100] if isinstance(issuer, str) else "(none)"
        raise SyncError(SyncErrorCode.UNAUTHORIZED, f"token issuer {shown} is not the issuer this database trusts")
    return config


def is_owner(ctx: ReducerContext, config: SyncConfig | None) -> bool:
    """Whether the caller is the database owner the configuration row records.

    The owner's identity is derived from its token's issuer and subject, so it already pins the issuer: the owner
    needs no trusted issuer to connect, and can therefore always name one.
    """
    return config is not None and ctx.sender == config.owner


def require_scope(claims: Mapping[str, Any], scope: Scope, action: str) -> None:
    """Raise `unauthorized` unless the claims grant `scope`.

    A `scopes` array holding the value (what control issues) answers without building the set of every scope
    (`scopes_of`), once per call; anything else takes the general reading.
    """
    value = scope.value
    granted = claims.get("scopes")
    if type(granted) is list and value in granted:
        return
    if value not in scopes_of(claims):
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
