"""`end-to-end`: many streams, runtime → host → desktops, no faults (the baseline)."""

from __future__ import annotations

from autopilot_sync.verification.scenarios.run import Run


async def end_to_end(run: Run) -> None:
    """Many streams at once, runtime → host → desktops, no faults: the baseline every chaos scenario is held to."""
    await run.stack.start()
    for i in range(run.profile.desktops):
        run.stack.add_desktop(f"d{i}", run.producer.streams)
    await run.producer.publish(run.profile.events_per_stream, run.profile.batch_size)
