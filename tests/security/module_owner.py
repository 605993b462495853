"""The database owner in attack tests: a Nostr key whose control-issued identity the host is told is its owner.

The host derives a caller's identity from the token's issuer and subject (SpacetimeDB's `Identity::from_claims`), so
the identity of a key is known before any token exists, and `AUTOPILOT_SYNC_HOST_OWNER_IDENTITY` can name it at
start. The owner changes the sync module's limits with `set_sync_limits` over HTTP, as an operator would.
"""

from __future__ import annotations

import json

import aiohttp

from autopilot_sync.control.client import fetch_session_token
from autopilot_sync.devtools.stack import DATABASE, LocalStack
from autopilot_sync.module.limits import SyncLimits
from autopilot_sync.nostr.keys import SecretKey


def make_owner(stack: LocalStack, owner: SecretKey) -> None:
    """Make `owner` (through control's tokens) the database owner: the host is told its identity, and it is the key
    that names control as the trusted issuer when the stack starts."""
    stack.owner_key = owner


async def call_set_sync_limits(stack: LocalStack, key: SecretKey, limits: SyncLimits) -> tuple[int, str]:
    """`POST /v1/database/:name/call/set_sync_limits` with a control token of `key`: (HTTP status, body text)."""
    token = await fetch_session_token(stack.control_url, key, ("sync.subscribe",), None, None, "test")
    url = f"{stack.host_url}/v1/database/{DATABASE}/call/set_sync_limits"
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url,
            data=json.dumps(list(limits.as_tuple())),
            headers={"Authorization": f"Bearer {token.token}", "Content-Type": "application/json"},
        ) as response,
    ):
        return response.status, await response.text()
