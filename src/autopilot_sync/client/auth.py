"""Tokens on the client side: reading a token's expiry.

The SDK sends its token in the WebSocket upgrade's `Authorization` header (`connection._open`), as SpacetimeDB's Rust
SDK does, so it never appears in a URL. (The official TypeScript SDK trades it for a 60-second one at
`POST /v1/identity/websocket-token` first, because a browser cannot set that header; the host serves both.) The
expiry is read (not verified: only the server can do that) so the reconnection manager can refresh a token before it
runs out.
"""

from __future__ import annotations

import base64
import json


def token_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT in Unix seconds, or None when absent or unreadable (no signature check)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, json.JSONDecodeError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None
