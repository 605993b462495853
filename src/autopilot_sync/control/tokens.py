"""Session tokens: the claims the control service signs for a proven Nostr key, and the response describing them.

The claims are exactly what the host and the sync module read: `iss`/`sub` (from which the host derives the
caller's identity; `sub` is the Nostr hex pubkey the proof verified), `hex_identity` (that same derivation, so the
host can cross-check it), `scopes` and `streams` (authorization in reducers), `client_kind` (presence). Nothing here
comes from the client except what the policy already approved.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from autopilot_sync.control.keys import SigningKey
from autopilot_sync.control.request import TokenRequest
from autopilot_sync.nostr.keys import PublicKey
from autopilot_sync.spacetime.identity import identity_from_claims

#: The audience every token names first (the one SpacetimeDB uses); the database follows.
SPACETIME_AUDIENCE = "spacetimedb"
#: A client should fetch a new token this many seconds before its token expires, by default (the control setting
#: `token_refresh_margin_seconds`).
REFRESH_MARGIN_SECONDS = 30


@dataclass(frozen=True, slots=True)
class TokenContext:
    """What every token of one control service shares: its issuer, the database the tokens are for, and how long
    before expiry clients are told to refresh (`refresh_after_in`)."""

    issuer: str
    database: str
    spacetime_base_url: str
    refresh_margin: int = REFRESH_MARGIN_SECONDS


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A signed token and everything the `200` response says about it."""

    token: str
    claims: dict[str, Any]
    ttl_seconds: int
    pubkey: PublicKey
    context: TokenContext

    @property
    def refresh_after_in(self) -> int:
        """Seconds after which the client should fetch a replacement: the refresh margin before expiry.

        Settings keep the margin below the shortest lifetime, so this is positive; clients that refresh at this time
        reconnect before the host closes their sockets at expiry.
        """
        return max(self.ttl_seconds - self.context.refresh_margin, 0)

    def response(self) -> dict[str, Any]:
        """The JSON body of `200 OK`."""
        return {
            "token": self.token,
            "token_type": "Bearer",
            "expires_in": self.ttl_seconds,
            "refresh_after_in": self.refresh_after_in,
            "scopes": list(self.claims["scopes"]),
            "streams": list(self.claims["streams"]),
            "identity": self.claims["hex_identity"],
            "issuer": self.claims["iss"],
            "nostr_pubkey_hex": self.pubkey.hex,
            "npub": self.pubkey.npub,
            "database": self.context.database,
            "spacetime_base_url": self.context.spacetime_base_url,
        }


def session_claims(request: TokenRequest, pubkey: PublicKey, context: TokenContext, now: int) -> dict[str, Any]:
    """The claims of a token for `pubkey` granting `request` (already checked by the policy), issued at `now`."""
    return {
        "iss": context.issuer,
        "sub": pubkey.hex,
        "aud": [SPACETIME_AUDIENCE, context.database],
        "iat": now,
        "nbf": now,
        "exp": now + request.ttl_seconds,
        "jti": uuid.uuid4().hex,
        "hex_identity": identity_from_claims(context.issuer, pubkey.hex).hex,
        "scopes": [scope.value for scope in request.scopes],
        "streams": list(request.streams or ()),
        "client_kind": request.client_kind,
    }


def mint(request: TokenRequest, pubkey: PublicKey, context: TokenContext, key: SigningKey, now: int) -> IssuedToken:
    """Sign the session claims with the active key."""
    claims = session_claims(request, pubkey, context, now)
    return IssuedToken(key.sign(claims), claims, request.ttl_seconds, pubkey, context)
