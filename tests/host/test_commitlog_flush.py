"""The group-commit flusher: when a flush starts, and what each flush covers."""

from __future__ import annotations

import asyncio
import threading
import time
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


def open_log(tmp_path: Path, inline_fsync_max_seconds: float = 0.5) -> CommitLog:
    """A log whose fake fsyncs count as fast even on a loaded machine (a bound far above their microseconds)."""
    log = CommitLog(tmp_path, inline_fsync_max_seconds=inline_fsync_max_seconds)
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


class TimedFsync:
    """Replaces the fsync: records which thread ran each call, and takes `seconds` (a slow disk when set)."""

    def __init__(self) -> None:
        self.threads: list[int] = []
        self.seconds = 0.0

    def __call__(self, fds: list[int]) -> None:
        self.threads.append(threading.get_ident())
        if self.seconds:
            time.sleep(self.seconds)


@pytest.fixture
def timed(monkeypatch: pytest.MonkeyPatch) -> TimedFsync:
    fsync = TimedFsync()
    monkeypatch.setattr(commitlog, "_fsync_all", fsync)
    return fsync


async def commit_one(log: CommitLog, payload: bytes = b"x") -> None:
    future = log.durable_future(log.append(payload))
    assert future is not None
    await asyncio.wait_for(future, 5)


async def test_once_fsyncs_are_fast_a_flush_runs_on_the_event_loop_without_the_thread(
    tmp_path: Path, timed: TimedFsync
) -> None:
    log = open_log(tmp_path)
    loop_thread = threading.get_ident()
    for _ in range(commitlog.INLINE_AFTER_FAST_FSYNCS):
        assert not log.flushes_inline  # the disk is not known yet: the thread, so the loop never waits on it
        await commit_one(log)
    assert all(thread != loop_thread for thread in timed.threads)
    assert log.flushes_inline
    await commit_one(log)
    assert timed.threads[-1] == loop_thread
    assert log.fsync_count == commitlog.INLINE_AFTER_FAST_FSYNCS + 1
    log.close()


async def test_commits_of_one_loop_iteration_share_one_inline_fsync(tmp_path: Path, timed: TimedFsync) -> None:
    log = open_log(tmp_path)
    for _ in range(commitlog.INLINE_AFTER_FAST_FSYNCS):
        await commit_one(log)
    before = len(timed.threads)
    futures = [log.durable_future(log.append(b"batch")) for _ in range(5)]
    assert all(future is not None and not future.done() for future in futures)  # nothing durable before the fsync
    await asyncio.wait_for(asyncio.gather(*(f for f in futures if f is not None)), 5)
    assert len(timed.threads) == before + 1
    log.close()


async def test_a_slow_inline_fsync_sends_flushes_back_to_the_thread_for_longer(
    tmp_path: Path, timed: TimedFsync
) -> None:
    """The loop stalls for at most one slow fsync; then twice as many fast ones are needed before it flushes again."""
    log = open_log(tmp_path)
    loop_thread = threading.get_ident()
    for _ in range(commitlog.INLINE_AFTER_FAST_FSYNCS):
        await commit_one(log)
    timed.seconds = 0.6  # the disk turns slow: this inline fsync stalls the loop once
    await commit_one(log)
    assert timed.threads[-1] == loop_thread and not log.flushes_inline
    await commit_one(log)  # slow again, but in the thread now: the loop runs meanwhile
    assert timed.threads[-1] != loop_thread
    timed.seconds = 0.0
    for _ in range(2 * commitlog.INLINE_AFTER_FAST_FSYNCS):
        assert not log.flushes_inline
        await commit_one(log)
    assert all(thread != loop_thread for thread in timed.threads[-2 * commitlog.INLINE_AFTER_FAST_FSYNCS :])
    assert log.flushes_inline
    log.close()


async def test_inline_flushes_are_off_when_the_bound_is_zero(tmp_path: Path, timed: TimedFsync) -> None:
    log = open_log(tmp_path, inline_fsync_max_seconds=0.0)
    for _ in range(3 * commitlog.INLINE_AFTER_FAST_FSYNCS):
        await commit_one(log)
    assert threading.get_ident() not in timed.threads and not log.flushes_inline
    log.close()


async def test_a_durable_callback_runs_in_the_flush_that_covers_it_after_the_durable_hook(
    tmp_path: Path, gated: GatedFsync
) -> None:
    log = open_log(tmp_path)
    heard: list[object] = []
    log.on_durable = lambda target: heard.append(("durable", target))
    assert log.when_durable(log.append(b"one"), lambda error: heard.append(("callback", error)))
    assert gated.started.acquire(timeout=5)
    assert heard == []  # nothing is told before the fsync returned
    gated.release.release()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if heard:
            break
    assert heard == [("durable", 1), ("callback", None)]
    assert not log.when_durable(1, lambda error: heard.append(("late", error)))  # already durable: not called
    log.close()


async def test_a_callback_that_writes_again_is_covered_by_the_next_flush(tmp_path: Path, timed: TimedFsync) -> None:
    log = open_log(tmp_path)
    done = asyncio.get_running_loop().create_future()

    def first(error: BaseException | None) -> None:
        assert error is None
        assert log.when_durable(log.append(b"two"), lambda again: done.set_result(again))

    assert log.when_durable(log.append(b"one"), first)
    assert await asyncio.wait_for(done, 5) is None
    assert log.fsync_count == 2
    log.close()


async def test_a_failed_fsync_tells_every_durable_callback(tmp_path: Path, gated: GatedFsync) -> None:
    log = open_log(tmp_path)
    errors: list[BaseException | None] = []
    failures: list[BaseException] = []
    log.on_failure = failures.append
    assert log.when_durable(log.append(b"one"), errors.append)
    assert gated.started.acquire(timeout=5)
    gated.fail = True
    gated.release.release()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if errors:
            break
    assert len(failures) == 1 and len(errors) == 1 and isinstance(errors[0], StorageFailedError)
    with pytest.raises(StorageFailedError):
        log.when_durable(1, errors.append)
    log.close()
