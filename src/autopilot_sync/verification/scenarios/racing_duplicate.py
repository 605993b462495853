"""`racing-duplicate`: two identical appends race under a slow fsync; the host is cut at the first answer."""

from __future__ import annotations

import asyncio
import contextlib

from autopilot_sync.client import ReducerCommitted
from autopilot_sync.verification.scenarios.direct_producer import direct_producer
from autopilot_sync.verification.scenarios.run import Run

#: The slow fsync of `racing-duplicate`: every commit stays unfsynced this long, far longer than an answer takes.
RACE_FSYNC_DELAY = 0.5


async def racing_duplicate(run: Run) -> None:
    """Two producers race one append (same idempotency key, same payload) on one connection while the host's commit
    log is under power-cut semantics with a slow fsync; the host is cut the moment the first answer arrives. An
    answered append must survive the cut, since no answer may leave before the commit it reveals is durable (issue
    15, item 1); the call left without an answer is an unknown outcome that may land at most once."""
    producer = await direct_producer(run, RACE_FSYNC_DELAY)
    await producer.append(1)
    raced, key, hashed = producer.event(2)
    calls = [asyncio.create_task(producer.conn.call("append_sync_events", [raced])) for _ in range(2)]
    done, _ = await asyncio.wait(calls, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    producer.cut()  # at once: the cut must land inside the slow fsync if the answer was early
    for number, call in enumerate(calls):
        try:
            result = await asyncio.wait_for(call, 10) if call not in done else call.result()
        except Exception as exc:  # the connection died with the host: no answer
            run.recorder.unknown(f"race-{number}", producer.stream_id, hashed, retried=False, reason=repr(exc)[:200])
            continue
        if isinstance(result, ReducerCommitted):
            run.recorder.ack(producer.stream_id, 2, hashed, key)
        else:
            run.problems.append(f"a raced append was refused: {result}")
    if not done:
        run.problems.append("neither raced append was answered within 30 s")
    with contextlib.suppress(Exception):
        await producer.conn.close()
    await run.stack.start_host()
