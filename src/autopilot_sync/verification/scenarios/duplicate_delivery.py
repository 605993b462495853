"""`duplicate-delivery`: acks dropped on the way back to the runtime; retries must stay duplicates."""

from __future__ import annotations

import asyncio

from autopilot_sync.verification.proxy import Blackhole, Direction
from autopilot_sync.verification.scenarios.run import Run
from autopilot_sync.verification.stack import wait_until


async def duplicate_delivery(run: Run) -> None:
    """Acks are dropped on the way back to the runtime (the host commits, the runtime never hears): after the reset
    the outbox retries, the module answers 'duplicate', and no client may see an event twice."""
    await run.stack.start()
    run.stack.add_desktop("d0", run.producer.streams)
    await run.producer.publish(run.profile.batch_size, run.profile.batch_size)
    await run.desktops_caught_up()
    before = sum(head for head, _, _ in (await run.stack.heads()).values())
    proxy = run.stack.proxy("runtime→host")
    proxy.set_toxics(Blackhole(Direction.DOWNSTREAM))
    await run.producer.publish(run.profile.batch_size, run.profile.batch_size)

    async def host_moved() -> bool:
        # Something committed whose ack was dropped. Not "every stream moved": the runtime coalesces its streams'
        # batches into a few calls per host link (`runtime/coalesce.py`), so a link whose answers never come holds
        # only the calls already in flight, and those may carry a few of the streams.
        heads = await run.stack.heads()
        return sum(h for h, _, _ in heads.values()) > before

    try:
        await wait_until("the host to commit while acks are dropped", host_moved, 30)
    except TimeoutError as exc:
        run.problems.append(str(exc))
    await asyncio.sleep(0.5)
    proxy.reset_all()
    proxy.clear()
    await run.producer.publish(run.profile.batch_size, run.profile.batch_size)
    await run.desktops_caught_up()
    duplicates = await run.stack.runtime_metric("autopilot_sync_runtime_duplicates_suppressed_total")
    run.metrics["duplicates_suppressed"] = duplicates
    if duplicates <= 0:
        run.problems.append("the runtime never retried a committed batch: the dropped acks were not exercised")
