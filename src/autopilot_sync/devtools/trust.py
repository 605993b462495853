"""Naming the sync module's trusted token issuer: the one step every fresh or reset sync database needs.

The sync module fails closed: until its owner calls `set_trusted_issuer`, every call that reads token claims (and
`client_connected` for anyone but the owner) is refused with `issuer_not_configured` (docs/security.md "The trusted
issuer"). Whatever starts a database names the issuer through one of these two: over the host's HTTP reducer route
with the owner's token (the local stack, `autopilot-sync up`, the chaos stack, process benches), or on an engine the
caller runs itself (engine-level tests and benches, which have no sockets).
"""

from __future__ import annotations

import aiohttp

from autopilot_sync.host.call_outcome import CallStatus
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.engine import HostEngine


async def name_trusted_issuer(engine: HostEngine, issuer: str) -> None:
    """Call `set_trusted_issuer(issuer)` as the engine's owner; RuntimeError when the module refuses."""
    outcome = await engine.call_reducer("set_trusted_issuer", (issuer,), Caller(engine.owner_identity))
    if outcome.status is not CallStatus.COMMITTED:
        raise RuntimeError(f"set_trusted_issuer: {outcome.status.value}: {outcome.message}")


async def call_set_trusted_issuer(host_url: str, database: str, owner_token: str, issuer: str) -> None:
    """`POST /v1/database/:name/call/set_trusted_issuer` with the owner's token; RuntimeError unless HTTP 200."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{host_url}/v1/database/{database}/call/set_trusted_issuer",
            json=[issuer],
            headers={"Authorization": f"Bearer {owner_token}"},
        ) as response,
    ):
        if response.status != 200:
            raise RuntimeError(f"set_trusted_issuer: HTTP {response.status}: {await response.text()}")
