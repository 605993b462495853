"""`half-open`: a link silenced without FIN or RST; only the host's idle timeout can notice it."""

from __future__ import annotations

import contextlib

from autopilot_sync.client import connect
from autopilot_sync.verification.proxy import Blackhole
from autopilot_sync.verification.scenarios.run import (
    ABRUPT_PRESENCE_BOUND,
    HALF_OPEN_PRESENCE_BOUND,
    Run,
    bounds_hold,
    key_hex,
    token_grant,
)
from autopilot_sync.verification.stack import DATABASE


async def half_open_presence(run: Run) -> None:
    """A link that goes silent without FIN or RST (blackhole both ways): the host can only notice through its idle
    timeout, so presence must return to the truth within HALF_OPEN_PRESENCE_BOUND."""
    await run.stack.start(runtime=False)
    grant = await token_grant(run, "alice")
    proxy = run.stack.proxy("clients→host")
    conn = await connect(proxy.url, DATABASE, token=grant.token)
    await run.presence_converges("half-open candidate up", ABRUPT_PRESENCE_BOUND, {key_hex(run, "alice"): 1})
    proxy.set_toxics(Blackhole())
    await run.presence_converges("after half-open link", HALF_OPEN_PRESENCE_BOUND, {})
    proxy.reset_all()
    proxy.clear()
    with contextlib.suppress(Exception):
        await conn.close()
    bounds_hold(run)
