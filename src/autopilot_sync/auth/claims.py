"""SpacetimeDB's claim rules for a JWT, apart from any signature: shape, `iss`/`sub`, `iat`/`exp`/`nbf`, audience.

Pure functions over a decoded claims mapping (`crates/core/src/auth/token_validation.rs`), shared by the host's
`TokenService` and the runtime's producer auth (`runtime/access.py`), which checks control's tokens the same way.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from autopilot_sync.auth.errors import TokenError, TokenErrorCode
from autopilot_sync.spacetime.identity import identity_from_claims
from autopilot_sync.spacetime.json_bounds import JsonBoundsError, bounded_loads
from autopilot_sync.spacetime.values import Identity

#: Clock skew tolerated on `exp` and `nbf` by default (the host setting `token_leeway_seconds`).
LEEWAY_SECONDS = 60
#: Claim of an exchanged token holding the expiry of the token it came from (null: the origin never expires).
ORIGIN_EXPIRY_CLAIM = "origin_exp"
#: SpacetimeDB's limit on `iss` and `sub`.
MAX_CLAIM_BYTES = 128


def _b64decode_json(segment: str, what: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = bounded_loads(raw)
    except JsonBoundsError as exc:
        raise TokenError(TokenErrorCode.MALFORMED, f"token {what} is over the input bounds: {exc}") from None
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise TokenError(TokenErrorCode.MALFORMED, f"token {what} is not base64url JSON") from None
    if not isinstance(value, dict):
        raise TokenError(TokenErrorCode.MALFORMED, f"token {what} is not a JSON object")
    return value


def parse_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWT, without checking anything but its shape."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise TokenError(TokenErrorCode.MALFORMED, "Authorization is invalid: malformed token")
    return _b64decode_json(parts[0], "header"), _b64decode_json(parts[1], "payload")


def _number(claims: Mapping[str, Any], name: str, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise TokenError(TokenErrorCode.MALFORMED, f"missing required claim {name!r}")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError(TokenErrorCode.MALFORMED, f"claim {name!r} must be a number of seconds")
    return float(value)


def _text(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str):
        raise TokenError(TokenErrorCode.MALFORMED, f"missing required claim {name!r}")
    if not value:
        raise TokenError(TokenErrorCode.MALFORMED, f"claim {name!r} is empty")
    if len(value.encode()) > MAX_CLAIM_BYTES:
        raise TokenError(TokenErrorCode.MALFORMED, f"claim {name!r} is over {MAX_CLAIM_BYTES} bytes")
    return value


def check_claims(claims: Mapping[str, Any], now: float, leeway: float = LEEWAY_SECONDS) -> tuple[Identity, str, str]:
    """Apply SpacetimeDB's claim rules; returns (identity, issuer, subject) or raises TokenError."""
    issuer = _text(claims, "iss")
    subject = _text(claims, "sub")
    _number(claims, "iat", required=True)
    exp = _number(claims, "exp", required=False)
    if exp is not None and now > exp + leeway:
        raise TokenError(TokenErrorCode.EXPIRED, "token has expired")
    nbf = _number(claims, "nbf", required=False)
    if nbf is not None and now + leeway < nbf:
        raise TokenError(TokenErrorCode.NOT_YET_VALID, "token is not valid yet (nbf)")
    aud = claims.get("aud")
    if (
        aud is not None
        and not isinstance(aud, str)
        and not (isinstance(aud, list) and all(isinstance(a, str) for a in aud))
    ):
        raise TokenError(TokenErrorCode.MALFORMED, "claim 'aud' must be a string or an array of strings")
    identity = identity_from_claims(issuer, subject)
    claimed = claims.get("hex_identity")
    if claimed is not None:
        try:
            token_identity = Identity.from_hex(claimed) if isinstance(claimed, str) else None
        except ValueError:
            token_identity = None
        if token_identity is None:
            raise TokenError(TokenErrorCode.MALFORMED, "claim 'hex_identity' must be 64 hex digits")
        if token_identity != identity:
            raise TokenError(
                TokenErrorCode.IDENTITY_MISMATCH,
                f"Identity mismatch: token identity {token_identity.hex} does not match computed identity "
                f"{identity.hex}",
            )
    return identity, issuer, subject


def origin_expiry(claims: Mapping[str, Any], *, host_signed: bool) -> float | None:
    """When the rights a verified token proves end: `origin_exp` of a token this host signed, else its `exp`.

    `origin_exp` is only believed from tokens signed with the host's key (the host wrote it when it exchanged a
    token); the same claim in another issuer's token is ignored.
    """
    if host_signed and ORIGIN_EXPIRY_CLAIM in claims:
        return _number(claims, ORIGIN_EXPIRY_CLAIM, required=False)
    return _number(claims, "exp", required=False)


def audiences(claims: Mapping[str, Any]) -> list[str]:
    """The `aud` claim as a list (a single string is a list of one; absent is empty)."""
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    return [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []


def check_audience(claims: Mapping[str, Any], database: str) -> None:
    """Refuse a token whose `aud` does not name `database` (WRONG_AUDIENCE, a 401 naming both)."""
    named = audiences(claims)
    if database not in named:
        raise TokenError(
            TokenErrorCode.WRONG_AUDIENCE,
            f"token is not for this database: its audience {named} does not name {database!r}; "
            f"ask the issuer for a token for {database!r}",
        )
