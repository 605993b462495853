"""`churn`: a seeded schedule of network faults on every proxied pair while the runtime publishes."""

from __future__ import annotations

import asyncio
import random
import time

from autopilot_sync.verification.proxy import Bandwidth, Blackhole, Latency, Slicer, Timeout, Toxic
from autopilot_sync.verification.scenarios.run import Run, spread


def churn_plan(rng: random.Random, seconds: float) -> list[tuple[float, str, str, float]]:
    """The fault schedule of a churn run: `(at, proxy, fault, duration)`, fully determined by the rng."""
    plan: list[tuple[float, str, str, float]] = []
    at = 0.0
    proxies = ("runtime→host", "desktop→host", "control")
    faults = ("latency", "slicer", "bandwidth", "reset", "blackhole", "timeout")
    while at < seconds or len(plan) < len(proxies):
        at += round(rng.uniform(0.3, 1.0), 3)
        # The first rounds visit every pair once, so even a short run faults each of them.
        proxy = proxies[len(plan)] if len(plan) < len(proxies) else rng.choice(proxies)
        plan.append((round(at, 3), proxy, rng.choice(faults), round(rng.uniform(0.2, 1.0), 3)))
    return plan


async def apply_fault(run: Run, proxy_name: str, fault: str, duration: float) -> None:
    """Apply one planned fault for `duration` seconds, then lift it (a silenced link always ends in a reset, as a
    real one would: dropping bytes inside a live TCP stream is not something a network does)."""
    proxy = run.stack.proxy(proxy_name)
    if fault == "reset":
        proxy.reset_all()
        return
    toxics: dict[str, Toxic] = {
        "latency": Latency(0.05, 0.04),
        "slicer": Slicer(average=24, variation=16, delay=0.0005),
        "bandwidth": Bandwidth(64 * 1024),
        "blackhole": Blackhole(),
        "timeout": Timeout(duration / 2),
    }
    proxy.set_toxics(toxics[fault])
    await asyncio.sleep(duration)
    proxy.clear()
    if fault in ("blackhole", "timeout"):
        proxy.reset_all()


async def churn(run: Run) -> None:
    """Network churn on every proxied pair while the runtime publishes many streams."""
    await run.stack.start()
    for i in range(run.profile.desktops):
        run.stack.add_desktop(f"d{i}", run.producer.streams)
    plan = churn_plan(run.rng, run.profile.churn_seconds)
    run.note("plan", plan=plan)

    async def faults() -> None:
        started = time.monotonic()
        for at, proxy_name, fault, duration in plan:
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            await apply_fault(run, proxy_name, fault, duration)

    pause = spread(run, run.profile.churn_seconds)
    await asyncio.gather(faults(), run.producer.publish(run.profile.events_per_stream, run.profile.batch_size, pause))
