"""Why a token was refused: the one error type of the host's auth package (tokens, claims, OIDC keys).

It lives apart from `tokens.py` and `oidc.py` so both can raise it without importing each other.
"""

from __future__ import annotations

import enum

from autopilot_sync.contract.errors import CodedError


class TokenErrorCode(enum.Enum):
    """Why a token was refused; the value is the stable code clients and logs see."""

    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    UNKNOWN_ISSUER = "unknown_issuer"
    IDENTITY_MISMATCH = "identity_mismatch"
    JWKS_UNAVAILABLE = "jwks_unavailable"
    WRONG_AUDIENCE = "wrong_audience"


class TokenError(CodedError[TokenErrorCode]):
    """A token that cannot be accepted; `code` classifies it, the message says what exactly (HTTP 401 body)."""
