"""The stream heads the sync module keeps between calls (`module/head_book.py`) are never staler than the table.

The book saves an append the head row's find; every way the table changes without it — a call rolled back after its
heads were written, a refused call, a trim or a reset, a restart from the log or from a snapshot, a second database
in the same process — must leave the next append judging and chaining exactly as if it had read the table. Through
the real engine and the Python module (the TypeScript twin keeps no book; the `engine` fixture runs both elsewhere).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sync_module_helpers import ADMIN, PUBLISHER, TEST_ISSUER, event

from autopilot_sync.contract import stream_chain
from autopilot_sync.contract.codes import SyncErrorCode, parse_error_code
from autopilot_sync.devtools.trust import name_trusted_issuer
from autopilot_sync.host.call_outcome import CallStatus
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.commitlog import StorageFailedError
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.module import module
from autopilot_sync.module.head_book import MEMO_KEY, HeadBook
from autopilot_sync.sync_bindings import StreamHead, SyncEvent


async def started(data_dir: Path, config: EngineConfig | None = None) -> HostEngine:
    engine = HostEngine(module, data_dir, "autopilot-sync", config or EngineConfig(fsync=False))
    await engine.start()
    await name_trusted_issuer(engine, TEST_ISSUER)
    return engine


@pytest.fixture
async def python_engine(tmp_path: Path) -> AsyncIterator[HostEngine]:
    engine = await started(tmp_path)
    try:
        yield engine
    finally:
        await engine.stop()


def heads(engine: HostEngine) -> dict[str, StreamHead]:
    rows = [StreamHead.from_values(row) for row in engine.datastore["stream_head"].rows.values()]
    return {row.stream_id: row for row in rows}


def book(engine: HostEngine) -> HeadBook:
    found = engine.datastore["stream_head"].memo[MEMO_KEY]
    assert isinstance(found, HeadBook)
    return found


def assert_chain_holds(engine: HostEngine, stream: str) -> None:
    head = heads(engine)[stream]
    rows = [SyncEvent.from_values(row) for row in engine.datastore["sync_event"].rows.values()]
    stored = sorted((row for row in rows if row.stream_id == stream), key=lambda row: row.seq)
    assert stream_chain.first_break(head.retained_from_seq - 1, head.floor_chain, stored) is None
    assert head.head_chain == (stored[-1].chain if stored else head.floor_chain)
    assert head.head_seq == (stored[-1].seq if stored else head.retained_from_seq - 1)


async def append(engine: HostEngine, *events: object, who: Caller = PUBLISHER) -> SyncErrorCode | None:
    """None when committed, else the refusal's code."""
    outcome = await engine.call_reducer("append_sync_events", (list(events),), who)
    if outcome.status is CallStatus.COMMITTED:
        return None
    assert outcome.status is CallStatus.USER_ERROR, outcome.message
    return parse_error_code(outcome.message)


async def test_the_book_holds_what_the_table_holds_after_appends(python_engine: HostEngine) -> None:
    assert await append(python_engine, event("a", 1, 1), event("b", 1, 1), event("a", 2, 2)) is None
    assert await append(python_engine, event("b", 2, 2), event("c", 1, 1)) is None
    table = heads(python_engine)
    kept = book(python_engine)
    assert kept.stamp == python_engine.datastore["stream_head"].rows.stamp
    assert set(kept.heads) == {"a", "b", "c"}
    for stream, head in kept.heads.items():
        stored = table[stream]
        assert (head.head_seq, head.head_chain, head.epoch) == (stored.head_seq, stored.head_chain, stored.epoch)
        assert (head.retained_from_seq, head.floor_chain) == (stored.retained_from_seq, stored.floor_chain)
        assert tuple(head.row) == tuple(stored)
        assert head.digest == stream_chain.raw(stored.head_chain)
        assert_chain_holds(python_engine, stream)


async def test_a_stale_expected_seq_is_still_refused_when_the_head_comes_from_the_book(
    python_engine: HostEngine,
) -> None:
    assert await append(python_engine, event("s", 1, 1), event("s", 2, 2)) is None
    assert "s" in book(python_engine).heads
    assert await append(python_engine, event("s", 2, 2, key="s:2:again")) is SyncErrorCode.SEQUENCE_CONFLICT
    assert await append(python_engine, event("s", 4, 4)) is SyncErrorCode.SEQUENCE_CONFLICT
    assert await append(python_engine, event("s", 2, 2)) is None  # the committed key and hash: the duplicate
    assert await append(python_engine, event("s", 3, 3)) is None
    assert heads(python_engine)["s"].head_seq == 3
    assert_chain_holds(python_engine, "s")


async def test_a_refused_call_leaves_every_head_as_it_was(python_engine: HostEngine) -> None:
    assert await append(python_engine, event("a", 1, 1), event("b", 1, 1)) is None
    before = heads(python_engine)
    # stream a moves in this call, then b's gap refuses the whole call
    assert await append(python_engine, event("a", 2, 2), event("b", 3, 3)) is SyncErrorCode.SEQUENCE_CONFLICT
    assert heads(python_engine) == before
    assert await append(python_engine, event("a", 2, 2), event("b", 2, 2)) is None
    assert_chain_holds(python_engine, "a")
    assert_chain_holds(python_engine, "b")


async def test_a_call_rolled_back_after_its_heads_were_written_leaves_them_as_they_were(
    python_engine: HostEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit fails after the reducer wrote the heads (and the book recorded them): the rollback's undo moves the
    table's stamp, so the next call reads the heads from the table again, as they were."""
    assert await append(python_engine, event("a", 1, 1), event("b", 1, 1)) is None
    before = heads(python_engine)
    log = python_engine.commitlog
    real_append = log.append

    def failing_once(record: bytes) -> int:
        monkeypatch.setattr(log, "append", real_append)
        raise StorageFailedError("injected: the disk refused this record")

    monkeypatch.setattr(log, "append", failing_once)
    outcome = await python_engine.call_reducer("append_sync_events", ([event("a", 2, 2), event("b", 2, 2)],), PUBLISHER)
    assert outcome.status is CallStatus.INTERNAL_ERROR and "injected" in outcome.message
    assert heads(python_engine) == before
    assert book(python_engine).stamp != python_engine.datastore["stream_head"].rows.stamp  # the book is stale now
    assert await append(python_engine, event("a", 2, 2, key="a:2:retry"), event("b", 2, 2)) is None
    assert {s: h.head_seq for s, h in heads(python_engine).items()} == {"a": 2, "b": 2}
    assert_chain_holds(python_engine, "a")
    assert_chain_holds(python_engine, "b")


async def test_a_trim_or_a_reset_between_appends_is_what_the_next_append_sees(python_engine: HostEngine) -> None:
    assert await append(python_engine, *(event("s", n, n) for n in range(1, 6))) is None
    outcome = await python_engine.call_reducer("trim_stream", ("s", 4), ADMIN)
    assert outcome.status is CallStatus.COMMITTED, outcome.message
    trimmed = heads(python_engine)["s"]
    assert await append(python_engine, event("s", 6, 6)) is None
    head = heads(python_engine)["s"]  # the write-back kept the floor the trim raised
    assert (head.retained_from_seq, head.floor_chain) == (4, trimmed.floor_chain)
    assert_chain_holds(python_engine, "s")

    outcome = await python_engine.call_reducer("reset_stream", ("s",), ADMIN)
    assert outcome.status is CallStatus.COMMITTED, outcome.message
    assert await append(python_engine, event("s", 7, 7)) is SyncErrorCode.SEQUENCE_CONFLICT  # head is 0 now
    assert await append(python_engine, event("s", 1, 1, key="s:1:epoch2")) is None
    head = heads(python_engine)["s"]
    assert (head.head_seq, head.epoch, head.floor_chain) == (1, 2, stream_chain.genesis("s", 2))
    assert_chain_holds(python_engine, "s")


@pytest.mark.parametrize("from_snapshot", [False, True], ids=["from the log", "from a snapshot"])
async def test_a_restart_gives_the_same_heads_and_appends_go_on(tmp_path: Path, from_snapshot: bool) -> None:
    config = EngineConfig(fsync=False, snapshot_every=3 if from_snapshot else 1_000_000)
    engine = await started(tmp_path, config)
    for n in range(1, 6):
        assert await append(engine, event("a", n, n), event(f"b{n}", 1, n)) is None
    before = heads(engine)
    await engine.stop()
    restarted = await started(tmp_path, config)
    try:
        assert (restarted.recovery.snapshot_offset > 0) is from_snapshot
        assert heads(restarted) == before
        assert MEMO_KEY not in restarted.datastore["stream_head"].memo or not book(restarted).heads
        assert await append(restarted, event("a", 5, 5, key="a:5:again")) is SyncErrorCode.SEQUENCE_CONFLICT
        assert await append(restarted, event("a", 6, 6), event("b1", 2, 2)) is None
        assert_chain_holds(restarted, "a")
        assert_chain_holds(restarted, "b1")
    finally:
        await restarted.stop()


async def test_two_databases_in_one_process_keep_their_own_heads(tmp_path: Path) -> None:
    one, two = await started(tmp_path / "one"), await started(tmp_path / "two")
    try:
        assert await append(one, event("s", 1, 1), event("s", 2, 2)) is None
        assert await append(two, event("s", 1, "other")) is None
        assert await append(one, event("s", 3, 3)) is None
        assert await append(two, event("s", 3, 3)) is SyncErrorCode.SEQUENCE_CONFLICT
        assert await append(two, event("s", 2, "other")) is None
        assert (heads(one)["s"].head_seq, heads(two)["s"].head_seq) == (3, 2)
        assert heads(one)["s"].head_chain != heads(two)["s"].head_chain
        assert_chain_holds(one, "s")
        assert_chain_holds(two, "s")
    finally:
        await one.stop()
        await two.stop()


async def test_the_book_starts_over_past_its_limit_and_stays_true(
    python_engine: HostEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(HeadBook, "LIMIT", 3)
    for n in range(1, 4):
        assert await append(python_engine, *(event(f"s{i}", n, n) for i in range(7))) is None
        assert len(book(python_engine).heads) <= 3
    assert {s: h.head_seq for s, h in heads(python_engine).items()} == {f"s{i}": 3 for i in range(7)}
    for i in range(7):
        assert_chain_holds(python_engine, f"s{i}")
