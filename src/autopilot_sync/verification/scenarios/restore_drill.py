"""The restore drill of docs/deployment.md ("Backups"), run by the verification suite: a backup taken while writes
go on restores into a host that holds every event committed before the backup began, with verifying chains.

The backup is taken exactly as the page says, from the live host's data directory, in its order: `meta.json` and
the signing key, then the snapshots (complete files only), then the commit-log segments oldest first. The drill
then restores the copy into a fresh directory, starts a second host process on it and audits every stream there.

The backup point is the stream heads the live host reports just before the copy starts: the host answers a read
only once every commit it reveals is on disk, so those events were durable when the copy began and must all be in
the restored host, with the same payload hashes as on the live host, and each stream's hash chain must verify from
its retained floor to its head (the same audit as `autopilot-sync verify-stream`). The second half of the load is
appended only once that point is taken, so the copy runs while writes are still to land on the host on any machine.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from autopilot_sync.control.client import fetch_session_token
from autopilot_sync.desktop.stream_audit import StreamAuditError, audit, fetch_stream
from autopilot_sync.devtools.processes import start_host
from autopilot_sync.verification.stack import DATABASE, READY_TIMEOUT

if TYPE_CHECKING:
    from autopilot_sync.verification.scenarios.run import Run

#: Polls of the heads (0.1-0.2 s apart) with no progress after the first half was appended, before the drill gives
#: up: the host stopped committing (a progress bound, not a time bound: each poll waits for the host's answer).
STALLED_POLLS = 300
#: What the live host's data directory holds at its top level that a backup must carry (docs/deployment.md).
TOP_LEVEL = ("meta.json", "id_ecdsa")


def back_up(data_dir: Path, backup: Path) -> list[str]:
    """Copy a running host's data directory in the documented order; the copied paths, in copy order.

    1. `meta.json` and `id_ecdsa`; 2. `snapshots/*.snap` (a `.tmp` is a snapshot being written: skipped);
    3. `commitlog/` segments, oldest first, last of all, so the log covers everything after the copied snapshots.
    A segment being appended may be copied with a partial record at its end: the restored host sets it aside as
    after a crash.
    """
    copied: list[str] = []
    backup.mkdir(parents=True, exist_ok=False)

    def copy(source: Path) -> None:
        target = backup / source.relative_to(data_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        copied.append(str(source.relative_to(data_dir)))

    for name in TOP_LEVEL:
        if (data_dir / name).is_file():
            copy(data_dir / name)
    for snapshot in sorted((data_dir / "snapshots").glob("*.snap")):
        copy(snapshot)
    for segment in sorted((data_dir / "commitlog").iterdir()) if (data_dir / "commitlog").is_dir() else []:
        if segment.is_file():
            copy(segment)
    return copied


async def restore_drill(run: Run) -> None:
    """Back up the live host mid-load, restore into a fresh directory, start a host there, audit every stream."""
    await run.stack.start()
    for i in range(run.profile.desktops):
        run.stack.add_desktop(f"d{i}", run.producer.streams)
    pause = 4.0 / max(1, run.profile.events_per_stream // run.profile.batch_size)  # the load spans ~4 s
    # The load goes in two halves, the second appended only once the backup point is taken, so the copy always
    # runs while writes are still to land on the host, however fast or slow the machine is: when the whole load
    # went at once, a loaded machine could see the producer (and the host) done before the point was reached.
    first = (run.profile.events_per_stream + 1) // 2
    publishing = asyncio.create_task(run.producer.publish(first, run.profile.batch_size, pause))
    # back up once about a third of the load is committed (the host's heads): waited for by progress, not time
    total = run.profile.streams * run.profile.events_per_stream
    point: dict[str, int] = {}
    stalled = 0
    while True:
        heads = {stream: head for stream, (head, _, _) in (await run.stack.heads()).items()}
        stalled = stalled + 1 if heads == point else 0
        point = heads
        if sum(point.values()) * 3 >= total:
            break
        if publishing.done() and (publishing.exception() is not None or stalled >= STALLED_POLLS):
            await publishing
            run.problems.append(f"restore drill: the host stopped at {sum(point.values())} of {total} events")
            return
        await asyncio.sleep(0.1 + run.rng.uniform(0, 0.1))
    rest = asyncio.create_task(
        run.producer.publish(run.profile.events_per_stream - first, run.profile.batch_size, pause)
    )
    during_writes = sum(point.values()) < total  # the rest of the load was still to land on the host
    backup = run.root / "backup"
    copied = await asyncio.to_thread(back_up, run.stack.root / "host", backup)
    run.note("backup taken", heads=point, files=len(copied), during_writes=during_writes)
    await asyncio.gather(publishing, rest)
    if not any(point.values()):
        run.problems.append("restore drill: nothing was committed before the backup began (the drill proves nothing)")
        return
    restored = run.root / "restored"
    await asyncio.to_thread(shutil.copytree, backup, restored)
    host = start_host(
        restored,
        database=DATABASE,
        env={"AUTOPILOT_SYNC_HOST_TRUSTED_ISSUERS": run.stack.control_public_url},
        wait=False,
    )
    await asyncio.to_thread(host.wait_ready, READY_TIMEOUT)  # as the stack's own children (a loaded machine)
    try:
        run.note("restored host ready", line=next((line for line in host.output if "ready" in line), ""))
        live = {view.stream_id: view for view in await run.stack.final_history()}
        token = await fetch_session_token(
            run.stack.control_public_url, run.stack.observer_key, ("sync.subscribe",), None, None, "restore-drill"
        )
        for stream_id, head in sorted(point.items()):
            try:
                found_head, events = await asyncio.wait_for(
                    fetch_stream(host.url, DATABASE, stream_id, token.token), 30
                )
            except (StreamAuditError, TimeoutError) as exc:
                run.problems.append(f"restore drill: {stream_id} unreadable on the restored host: {exc}")
                continue
            verdict = audit(found_head, events)
            if not verdict.ok:
                run.problems.append(f"restore drill: {verdict.render()}")
            restored_hashes = {int(row.seq): str(row.payload_hash) for row in events}
            live_hashes = {event.seq: event.payload_hash for event in live[stream_id].applied}
            for seq in range(int(found_head.retained_from_seq), head + 1):
                if restored_hashes.get(seq) != live_hashes.get(seq):
                    run.problems.append(
                        f"restore drill: {stream_id} seq {seq} (committed before the backup) is "
                        f"{'missing' if seq not in restored_hashes else 'different'} on the restored host"
                    )
                    break
        run.metrics["restore_drill"] = {
            "streams": len(point),
            "events_at_backup": sum(point.values()),
            "during_writes": during_writes,
        }
    finally:
        await asyncio.to_thread(host.stop)
