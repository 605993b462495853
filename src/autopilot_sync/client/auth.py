"""Tokens on the client side: the short-lived WebSocket token exchange and reading a token's expiry.

The official SDK never puts a long-lived token in a URL: it trades it for a 60-second one at
`POST /v1/identity/websocket-token` and sends that as `?token=`. We do the same. The expiry is read (not verified:
only the server can do that) so the reconnection manager can refresh a token before it runs out.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp

from autopilot_sync.client.errors import AuthenticationError, ConnectError


async def exchange_websocket_token(session: aiohttp.ClientSession, base_url: str, token: str) -> str:
    """The short-lived token to open the WebSocket with; `AuthenticationError` on 401, `ConnectError` otherwise."""
    url = f"{base_url.rstrip('/')}/v1/identity/websocket-token"
    try:
        async with session.post(url, headers={"Authorization": f"Bearer {token}"}) as response:
            text = await response.text()
            if response.status == 401:
                raise AuthenticationError(f"the server refused the token: {text[:200]}", status=401)
            if response.status != 200:
                raise ConnectError(f"POST {url} answered {response.status}: {text[:200]}", status=response.status)
            body: Any = json.loads(text)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ConnectError(f"cannot reach {url}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConnectError(f"POST {url} answered with invalid JSON: {exc}") from exc
    short = body.get("token") if isinstance(body, dict) else None
    if not isinstance(short, str) or not short:
        raise ConnectError(f"POST {url} answered without a token")
    return short


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
