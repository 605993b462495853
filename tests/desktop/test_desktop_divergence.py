"""A host that comes back with less history than a desktop applied, then commits other events: the desktop rebuilds.

Real processes (host, control, headless desktop). The host's data directory is restored from an older copy — what a
restore from backup or a lost commit-log tail does — and the host then commits a *different* event under a seq the
desktop already applied. Before the stream hash chain the desktop kept its old event, showed `live` with lag 0 and
never rebuilt (issue 15 item 4). Now it must notice (the head is behind its checkpoint, the head's chain value is not
its own, or the next event does not link to its copy), say so, count it, and end with exactly the host's history.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from desktop_stack import InProcessDesktop, Stack, running_stack, stream_state

from autopilot_sync.client.errors import ClientError
from autopilot_sync.client.query_set import QuerySet
from autopilot_sync.contract.canonical import hash_value
from autopilot_sync.desktop.rebuild import AHEAD_NOTICE, FORK_NOTICE, broken_notice
from autopilot_sync.desktop.state import DesktopState, StreamPhase
from autopilot_sync.desktop.sync import DesktopSync
from autopilot_sync.devtools.stack import DATABASE
from autopilot_sync.devtools.trust import name_trusted_issuer
from autopilot_sync.host.call_outcome import CallStatus
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.host.transaction import Transaction
from autopilot_sync.module import module
from autopilot_sync.spacetime.values import ConnectionId, Identity, Timestamp
from autopilot_sync.sync_bindings import AppendSyncEventsBatchItem, SyncEvent

STREAM = "audit.divergence"
PUBLISHED_AT = {"__timestamp_micros_since_unix_epoch__": 1_700_000_000_000_000}

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path, runtime=False) as running:
        yield running


async def append(stack: Stack, seq: int, tag: str = "") -> None:
    text, digest = hash_value({"seq": seq, "tag": tag})
    key = f"{STREAM}:{seq}{tag}"
    await stack.call_with(
        ("sync.append",), "append_sync_event", STREAM, key, "test.event", text, digest, seq, PUBLISHED_AT
    )


def stream(state: dict) -> dict:
    return stream_state(state, STREAM)


def applied_keys(config_dir: Path) -> list[str]:
    """The idempotency keys of the events a desktop stored for the stream, in seq order."""
    with sqlite3.connect(config_dir / f"{DATABASE}.sqlite3") as db:
        rows = db.execute("SELECT idempotency_key FROM applied_event WHERE stream_id = ? ORDER BY seq", (STREAM,))
        return [row[0] for row in rows]


def restored_keys(head: int) -> list[str]:
    """The restored host's history up to `head`: seqs 1-3 from the backup, the rest committed after the restore."""
    return [f"{STREAM}:{seq}" for seq in range(1, 4)] + [f"{STREAM}:{seq}:restored" for seq in range(4, head + 1)]


async def history_with_a_backup(stack: Stack) -> Path:
    """Seqs 1-3, a copy of the host's data directory taken then (the backup), and seq 4 after it; returns the copy."""
    await stack.grant_readers(STREAM)  # in the backup too: the restored host still lets the desktop read
    for seq in range(1, 4):
        await append(stack, seq)
    assert stack.host is not None and stack.host.stop() == 0
    backup = stack.root / "host-backup"
    shutil.copytree(stack.root / "host", backup)  # the older copy: head 3
    stack.start_host()
    await append(stack, 4)
    return backup


async def restore_with_other_events(stack: Stack, backup: Path, new_events: int) -> None:
    """The host restored from `backup` (back at head 3), then other events under seqs a desktop may have applied."""
    assert stack.host is not None
    assert stack.host.stop() == 0
    shutil.rmtree(stack.root / "host")
    shutil.copytree(backup, stack.root / "host")
    stack.start_host()
    for seq in range(4, 4 + new_events):
        await append(stack, seq, ":restored")


@pytest.mark.parametrize(
    ("desktop_running", "new_events", "causes"),
    [
        (True, 1, {"checkpoint_ahead", "chain_mismatch"}),  # seen live: the head goes back (or forks) under it
        (False, 1, {"chain_mismatch"}),  # on resume: the host's head is the checkpoint, with another chain value
        (False, 3, {"chain_mismatch"}),  # on resume: the host is past the checkpoint; its next event cannot link
    ],
)
async def test_a_desktop_ahead_of_a_restored_host_rebuilds_onto_the_hosts_history(
    stack: Stack, desktop_running: bool, new_events: int, causes: set[str]
) -> None:
    backup = await history_with_a_backup(stack)
    desktop = stack.desktop("reader", streams=(STREAM,))
    await desktop.wait_for("seq 4 applied", lambda s: stream(s).get("applied") == 4 and stream(s)["phase"] == "live")
    if not desktop_running:
        assert desktop.stop() == 0

    await restore_with_other_events(stack, backup, new_events)
    if not desktop_running:
        desktop = stack.desktop("reader", streams=(STREAM,))

    head = 3 + new_events
    done = await desktop.wait_for(
        "the rebuild onto the host's history",
        lambda s: (
            stream(s).get("divergences", 0) >= 1 and stream(s).get("applied") == head and stream(s)["phase"] == "live"
        ),
        within=90,
    )
    assert applied_keys(desktop.config_dir) == restored_keys(head)
    assert stream(done)["last_rebuild"] in causes
    assert stream(done)["rebuilds"] == stream(done)["divergences"] == 1
    assert stream(done)["lag"] == 0
    notices = {stream(s).get("notice") for s in desktop.states()}
    assert notices & {AHEAD_NOTICE, FORK_NOTICE}


async def test_a_host_whose_own_chain_is_broken_halts_the_stream_after_one_rebuild(tmp_path: Path) -> None:
    """A forged event on the host (its chain value no longer links): the desktop rebuilds once, sees the same
    break again, and stops before it with a notice naming the seq, instead of looping or applying it."""
    prepared = HostEngine(module, tmp_path / "host", DATABASE, EngineConfig(fsync=False))
    await prepared.start()
    batch = []
    for seq in range(1, 7):
        text, digest = hash_value({"seq": seq})
        key = f"{STREAM}:{seq}"
        batch.append(
            AppendSyncEventsBatchItem(STREAM, key, "test.event", text, digest, seq, Timestamp(1_700_000_000_000_000))
        )
    issuer = "https://prepared.test"  # named for this engine only: the stack names its control when it starts
    await name_trusted_issuer(prepared, issuer)
    publisher = Caller(Identity(1), ConnectionId(1), {"iss": issuer, "sub": "00" * 32, "scopes": ["sync.append"]})
    outcome = await prepared.call_reducer("append_sync_events", (batch,), publisher)
    assert outcome.status is CallStatus.COMMITTED, outcome.message
    store = prepared.datastore["sync_event"]
    (forged,) = [row for row in map(SyncEvent.from_values, store.rows.values()) if row.seq == 4]

    def forge(tx: Transaction) -> None:
        tx.delete_bytes(store, store.encode(forged))
        tx.insert(store, forged._replace(kind="forged"))

    _, sequence = prepared.run_transaction(None, (), Caller(Identity(0)), extra=forge)
    assert sequence is not None
    await prepared.commitlog.wait_durable(sequence)
    await prepared.stop()

    stack = Stack(tmp_path)
    try:
        stack.start(runtime=False)
        await stack.grant_readers(STREAM)
        desktop = stack.desktop("reader", streams=(STREAM,))
        done = await desktop.wait_for("the stream halted", lambda s: stream(s).get("phase") == "halted", within=90)
        assert stream(done)["notice"] == broken_notice(4)
        assert stream(done)["applied"] == 3 and applied_keys(desktop.config_dir) == [
            f"{STREAM}:{seq}" for seq in (1, 2, 3)
        ]
        assert stream(done)["rebuilds"] == stream(done)["divergences"] == 1
        assert stream(done)["last_rebuild"] == "chain_mismatch"
    finally:
        stack.stop()


def rows_before_the_subscribe_returns(sync: DesktopSync, monkeypatch: pytest.MonkeyPatch) -> None:
    """Force one ordering the real SDK produces now and then: a stream subscription's rows (its `SubscribeApplied`)
    are handled by the desktop before its `await client.subscribe(...)` returns (the host answered while the desktop's
    loop was still between the write and the caller's next step)."""
    subscribe = sync.client.subscribe

    async def subscribe_then_take_the_rows(queries: Sequence[str]) -> QuerySet:
        query_set = await subscribe(queries)
        if any("FROM sync_event" in query for query in queries):
            with contextlib.suppress(ClientError):
                await query_set.applied()
        return query_set

    monkeypatch.setattr(sync.client, "subscribe", subscribe_then_take_the_rows)


async def test_a_rebuild_on_a_new_subscriptions_first_rows_resubscribes_from_the_floor(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resume case above (the host past the desktop's checkpoint; its next event does not link) with the
    subscription's rows forced to arrive before `subscribe` returned. The rebuild they cause must still resubscribe
    from the floor: it once saw no query set yet, skipped that, and the stream stayed "rebuilding" for good."""
    backup = await history_with_a_backup(stack)
    config_dir = tmp_path / "reader"
    first = InProcessDesktop(stack, config_dir, streams=(STREAM,))
    try:
        await first.wait_for("seq 4 applied", lambda s: _applied(s) == 4)
    finally:
        await first.close()

    await restore_with_other_events(stack, backup, 3)
    forced = InProcessDesktop(
        stack, config_dir, streams=(STREAM,), prepare=lambda sync: rows_before_the_subscribe_returns(sync, monkeypatch)
    )
    try:
        done = await forced.wait_for("the rebuild onto the host's history", lambda s: _applied(s) == 6, within=30)
    finally:
        await forced.close()
    view = done.stream(STREAM)
    assert view is not None
    assert (view.last_rebuild, view.rebuilds, view.divergences) == ("chain_mismatch", 1, 1)
    assert applied_keys(config_dir) == restored_keys(6)


def _applied(state: DesktopState) -> int | None:
    """The stream's applied seq once it is live with its head applied (None before)."""
    view = state.stream(STREAM)
    live = view is not None and view.phase is StreamPhase.LIVE and view.applied_seq == view.head_seq
    return view.applied_seq if live and view is not None else None
