"""The group-commit flusher: when a flush starts, and what each flush covers."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from autopilot_sync.host import commitlog
from autopilot_sync.host.commitlog import CommitLog, StorageFailedError


class GatedFsync:
    """Replaces the fsync: records each call's start and blocks until released."""

    def __init__(self) -> None:
        self.started = threading.Semaphore(0)
        self.release = threading.Semaphore(0)
        self.calls = 0
        self.fail = False

    def __call__(self, fds: list[int]) -> None:
        self.calls += 1
        self.started.release()
        assert self.release.acquire(timeout=10)
        if self.fail:
            raise OSError(5, "injected I/O error")


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch) -> GatedFsync:
    gate = GatedFsync()
    monkeypatch.setattr(commitlog, "_fsync_all", gate)
    return gate


def open_log(tmp_path: Path) -> CommitLog:
    log = CommitLog(tmp_path)
    log.recover(0)
    log.open_segment(1)
    return log


async def test_a_lone_commit_starts_its_fsync_before_the_loop_runs_again(tmp_path: Path, gated: GatedFsync) -> None:
    log = open_log(tmp_path)
    future = log.durable_future(log.append(b"one"))
    assert future is not None
    # No await in between: the fsync must already be running in the flusher thread.
    assert gated.started.acquire(timeout=5)
    gated.release.release()
    await asyncio.wait_for(future, 5)
    assert log.fsync_count == 1
    log.close()


async def test_commits_written_during_a_flush_wait_for_the_next_one(tmp_path: Path, gated: GatedFsync) -> None:
    log = open_log(tmp_path)
    first = log.durable_future(log.append(b"one"))
    assert first is not None and gated.started.acquire(timeout=5)
    second = log.durable_future(log.append(b"two"))  # written after the first fsync started
    assert second is not None
    gated.release.release()
    await asyncio.wait_for(first, 5)
    assert not second.done()  # the first flush does not cover a record written after it started
    assert gated.started.acquire(timeout=5)
    gated.release.release()
    await asyncio.wait_for(second, 5)
    assert log.fsync_count == 2 and log.durable_future(2) is None
    log.close()


async def test_a_failed_fsync_fails_every_waiter_and_later_writes(tmp_path: Path, gated: GatedFsync) -> None:
    log = open_log(tmp_path)
    first = log.durable_future(log.append(b"one"))
    assert first is not None and gated.started.acquire(timeout=5)
    second = log.durable_future(log.append(b"two"))
    assert second is not None
    gated.fail = True
    gated.release.release()
    for future in (first, second):
        with pytest.raises(StorageFailedError):
            await asyncio.wait_for(future, 5)
    with pytest.raises(StorageFailedError):
        log.append(b"three")
    log.close()


async def test_the_durable_hook_hears_each_flush_before_its_waiters_resume(tmp_path: Path, gated: GatedFsync) -> None:
    """The engine's `DurableCommits` is told through `on_durable` (an explicit hook, not a patched method)."""
    log = open_log(tmp_path)
    heard: list[int] = []
    seen_by_waiter: list[list[int]] = []
    log.on_durable = heard.append
    future = log.durable_future(log.append(b"one"))
    assert future is not None
    future.add_done_callback(lambda _: seen_by_waiter.append(list(heard)))
    second = log.durable_future(log.append(b"two"))
    assert second is not None
    gated.release.release()
    await asyncio.wait_for(future, 5)
    gated.release.release()
    await asyncio.wait_for(second, 5)
    assert heard == [1, 2]
    assert seen_by_waiter == [[1]]
    log.close()
