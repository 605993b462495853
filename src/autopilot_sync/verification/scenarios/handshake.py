"""`handshake`: presence of SDK clients and a desktop through clean closes, TCP resets and SIGKILL."""

from __future__ import annotations

import contextlib
import random

from autopilot_sync.client import BackoffPolicy, SyncClient, connect
from autopilot_sync.verification.scenarios.run import ABRUPT_PRESENCE_BOUND, Run, bounds_hold, key_hex, token_grant
from autopilot_sync.verification.stack import DATABASE, wait_until


async def handshake(run: Run) -> None:
    """Two clients with control tokens (two Nostr keys): presence shows 2 connections and 2 identities, then 0; after
    a TCP reset and a SIGKILLed desktop presence returns to the truth within ABRUPT_PRESENCE_BOUND."""
    await run.stack.start(runtime=False)
    url = run.stack.proxy("clients→host").url
    grants = {name: await token_grant(run, name) for name in ("alice", "bob")}
    keys = {name: key_hex(run, name) for name in grants}

    def new_clients() -> list[SyncClient]:
        return [
            SyncClient(
                url,
                DATABASE,
                token=grants[n].token,
                policy=BackoffPolicy(base=0.2, cap=1.0),
                rng=random.Random(f"{run.seed}:{n}"),
            )
            for n in grants
        ]

    clients = new_clients()
    for client in clients:
        await client.start()
    for client in clients:
        await client.wait_connected()
    await run.presence_converges("two clients connected", ABRUPT_PRESENCE_BOUND, {keys["alice"]: 1, keys["bob"]: 1})
    for client in clients:
        await client.close()
    await run.presence_converges("both disconnected cleanly", ABRUPT_PRESENCE_BOUND, {})

    # A TCP reset through the proxy, with clients that reconnect: no stale row may remain next to the new ones.
    clients = new_clients()
    for client in clients:
        await client.start()
        await client.wait_connected()
    await run.presence_converges("reconnecting clients up", ABRUPT_PRESENCE_BOUND, {keys["alice"]: 1, keys["bob"]: 1})
    run.stack.proxy("clients→host").reset_all()
    await wait_until("both clients reconnected", lambda: all(c.reconnects >= 1 and c.connection for c in clients), 20)
    await run.presence_converges("after reset, reconnected", ABRUPT_PRESENCE_BOUND, {keys["alice"]: 1, keys["bob"]: 1})
    for client in clients:
        await client.close()

    # A TCP reset with one-shot connections: the truth becomes 0 and must be reached within the bound.
    conns = [await connect(url, DATABASE, token=grants[n].token) for n in grants]
    await run.presence_converges("one-shot connections up", ABRUPT_PRESENCE_BOUND, {keys["alice"]: 1, keys["bob"]: 1})
    run.stack.proxy("clients→host").reset_all()
    await run.presence_converges("after TCP reset", ABRUPT_PRESENCE_BOUND, {})
    for conn in conns:
        with contextlib.suppress(Exception):
            await conn.close()

    # SIGKILL of a headless desktop process.
    desktop = run.stack.add_desktop("victim")
    await wait_until("desktop live", lambda: desktop.last().get("connection", {}).get("phase") == "live", 30)
    await run.presence_converges("desktop live", ABRUPT_PRESENCE_BOUND)
    await desktop.kill()
    await run.presence_converges("after desktop SIGKILL", ABRUPT_PRESENCE_BOUND)
    desktop.start()
    await wait_until("desktop live again", lambda: desktop.last().get("connection", {}).get("phase") == "live", 30)

    bounds_hold(run)
