"""The control service: a Nostr NIP-98 proof in, a short-lived signed session token for the Spacetime host out.

`POST /api/sync/token` is the only way a Nostr identity enters the system: the token's `sub` is the pubkey whose
Schnorr signature was checked here, and hosts verify the token against this service's JWKS (OIDC discovery). The
pieces: `request` (body), `policy` (scopes), `tokens` (claims), `keys` (signing keys, rotation), `service` (the
decision, no I/O), `api`/`server`/`cli` (HTTP and process), `client` (what other components call). See
docs/control.md.
"""

from autopilot_sync.control.client import SessionToken, TokenFetchError, fetch_session_token
from autopilot_sync.control.errors import ControlError, ControlErrorCode

__all__ = [
    "ControlError",
    "ControlErrorCode",
    "SessionToken",
    "TokenFetchError",
    "fetch_session_token",
]
