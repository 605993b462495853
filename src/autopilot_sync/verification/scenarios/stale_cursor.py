"""`stale-cursor`: a stopped desktop's checkpoint falls below a trim; it must rebuild from the floor."""

from __future__ import annotations

from autopilot_sync.verification.scenarios.run import Run


async def stale_cursor(run: Run) -> None:
    """A stopped desktop's checkpoint falls below the retained floor after a trim: it must say so and rebuild from
    the floor (never a silent partial replay); a desktop that stayed live keeps everything."""
    await run.stack.start()
    live = run.stack.add_desktop("live", run.producer.streams)
    stale = run.stack.add_desktop("stale", run.producer.streams)
    await run.producer.publish(run.profile.events_per_stream // 2, run.profile.batch_size)
    await run.desktops_caught_up()
    await stale.stop()
    await run.producer.publish(run.profile.events_per_stream // 2, run.profile.batch_size)
    await run.desktops_caught_up()
    heads = run.acked_heads()
    trimmed = run.rng.sample(sorted(heads), k=max(1, len(heads) // 2))
    for stream_id in trimmed:
        await run.stack.call_as_admin("trim_stream", stream_id, heads[stream_id] - 1)
    run.note("trimmed", streams=trimmed)
    stale.start()
    await run.desktops_caught_up()
    for stream_id in trimmed:
        state = stale.stream_state(stream_id)
        if state.get("rebuilds", 0) < 1:
            run.problems.append(f"stale desktop did not rebuild {stream_id}: {state}")
    run.metrics["trimmed_streams"] = len(trimmed)
    del live
