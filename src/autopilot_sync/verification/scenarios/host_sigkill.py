"""`host-sigkill`: SIGKILL the host mid-publish (a power cut with `--power-cut`); nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import time

from autopilot_sync.verification.scenarios.run import Run, spread


async def host_sigkill(run: Run) -> None:
    """SIGKILL the host while the runtime publishes, restart it on the same port and data: nothing acknowledged by
    the producer may be lost, presence rows of the dead host are cleared at start."""
    await run.stack.start()
    for i in range(run.profile.desktops):
        run.stack.add_desktop(f"d{i}", run.producer.streams)
    pause = spread(run, 4.0)

    async def crash() -> None:
        await asyncio.sleep(1.0 + run.rng.uniform(0, 1.0))
        lost: list[int] = []
        # Under the power-cut fault the kill waits for unfsynced bytes; should a kill still cut nothing (the fsync
        # won the race), the host is cut again, at most three times, so the run surely exercises a real loss.
        for _ in range(3 if run.power_cut is not None else 1):
            cut = await run.stack.kill_host()
            detail = "host" if cut is None else f"host (power cut: {cut} unfsynced bytes lost)"
            run.journal.write("fault", scenario=run.name, proxy="-", action="sigkill", detail=detail)
            run.journal.faults += 1
            await asyncio.sleep(run.rng.uniform(0.2, 1.0))
            began = time.monotonic()
            host = await run.stack.start_host()
            run.recovery["host restart"] = round(time.monotonic() - began, 3)
            # What recovery set aside (a torn tail the cut left), as the host logged it: evidence, not a verdict.
            run.metrics["log_tails_set_aside"] = sum(1 for line in list(host.output) if "set aside" in line)
            if cut is None:
                break
            lost.append(cut)
            run.metrics["power_cut_lost_bytes"] = lost
            if cut > 0:
                break

    await asyncio.gather(crash(), run.producer.publish(run.profile.events_per_stream, run.profile.batch_size, pause))
