"""`undurable-read`: `/sql` read while a commit is written but not fsynced, then the host is cut."""

from __future__ import annotations

import asyncio
import contextlib

from autopilot_sync.verification.history import Applied, ClientHistory, StreamView
from autopilot_sync.verification.powercut import read_ledger
from autopilot_sync.verification.scenarios.direct_producer import direct_producer
from autopilot_sync.verification.scenarios.run import Run
from autopilot_sync.verification.stack import wait_until

#: The slow fsync of `undurable-read`, and how long its reader waits for `/sql` before the host is cut: an answer
#: that does not wait for durability comes in milliseconds, one that waits cannot come before the cut.
READ_FSYNC_DELAY = 3.0
READ_WAIT = 2.0


async def undurable_read(run: Run) -> None:
    """A reader queries `/sql` while an append's commit is written but not yet fsynced (slow fsync), then the host
    is cut: what `/sql` showed must still be in the host's history, since no answer may reveal a commit before it
    is durable (issue 15, item 2). A row read and then lost is a phantom for the reader (`unacknowledged`)."""
    producer = await direct_producer(run, READ_FSYNC_DELAY)
    await producer.append(1)
    await run.stack.sql("SELECT * FROM stream_head")  # the observer's token, fetched before the clock matters
    item, _, hashed = producer.event(2)
    call = asyncio.create_task(producer.conn.call("append_sync_events", [item]))
    await wait_until(
        "the commit to be written, not yet fsynced",
        lambda: (read_ledger(run.stack.power_cut_ledger) or 0) > 0,
        30,
        every=0.001,
    )
    read = asyncio.create_task(
        run.stack.sql_records(f"SELECT * FROM sync_event WHERE stream_id = '{producer.stream_id}'")
    )
    done, _ = await asyncio.wait([read], timeout=READ_WAIT)
    producer.cut()
    rows = read.result() if read in done and read.exception() is None else None
    with contextlib.suppress(Exception):
        await read
    try:
        await asyncio.wait_for(call, 10)
        run.problems.append("the append was answered although the host was cut inside its fsync")
    except Exception as exc:  # no answer: it may or may not have landed
        run.recorder.unknown("read-append", producer.stream_id, hashed, retried=False, reason=repr(exc)[:200])
    run.metrics["sql_answered_before_the_cut"] = rows is not None
    if rows is not None:
        seen = sorted(
            (
                Applied(str(r["stream_id"]), int(r["seq"]), str(r["idempotency_key"]), str(r["payload_hash"]))
                for r in rows
            ),
            key=lambda event: event.seq,
        )
        reader = ClientHistory("sql-reader", (StreamView(producer.stream_id, tuple(seen)),))
        run.recorder.client(reader, [producer.stream_id])
    with contextlib.suppress(Exception):
        await producer.conn.close()
    await run.stack.start_host()
