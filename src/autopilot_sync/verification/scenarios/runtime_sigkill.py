"""`runtime-sigkill`: SIGKILL the runtime mid-drain; the outbox resumes in order."""

from __future__ import annotations

import asyncio
import time

from autopilot_sync.verification.scenarios.run import Run, spread


async def runtime_sigkill(run: Run) -> None:
    """SIGKILL the runtime mid-drain and restart it: the outbox resumes in order, producers retrying with the same
    request id get the original seqs, and every acknowledged event reaches every desktop once."""
    await run.stack.start()
    for i in range(run.profile.desktops):
        run.stack.add_desktop(f"d{i}", run.producer.streams)

    async def crash() -> None:
        await asyncio.sleep(1.0 + run.rng.uniform(0, 1.0))
        assert run.stack.runtime is not None
        await asyncio.to_thread(run.stack.runtime.kill)
        run.journal.write("fault", scenario=run.name, proxy="-", action="sigkill", detail="runtime")
        run.journal.faults += 1
        await asyncio.sleep(run.rng.uniform(0.2, 1.0))
        began = time.monotonic()
        await run.stack.start_runtime()
        run.recovery["runtime restart"] = round(time.monotonic() - began, 3)

    pause = spread(run, 4.0)
    await asyncio.gather(crash(), run.producer.publish(run.profile.events_per_stream, run.profile.batch_size, pause))
