"""The outbox's promises: seqs gap-free from 1 per stream, all-or-nothing appends, idempotent requests, durable."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from autopilot_sync.runtime.outbox import Outbox, idempotency_key
from autopilot_sync.runtime.streams import InputErrorCode, InvalidInputError, NewEvent, run_event, worker_snapshot

VECTORS = Path(__file__).parent.parent / "vectors" / "payload_hash.json"


def _event(stream: str, n: int = 0) -> NewEvent:
    return NewEvent(stream, "run.message.delta", {"n": n})


def test_seqs_are_gap_free_from_one_per_stream(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    for n in range(5):
        outbox.append([_event("a", n), _event("b", n)], now_us=n)
    outbox.append([_event("a", 5)], now_us=9)
    assert [e.seq for e in outbox.events("a")] == [1, 2, 3, 4, 5, 6]
    assert [e.seq for e in outbox.events("b")] == [1, 2, 3, 4, 5]
    assert [e.idempotency_key for e in outbox.events("b")][:2] == ["b:1", "b:2"]


def test_a_refused_append_stores_nothing_and_leaves_no_gap(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    outbox.append([_event("a")], now_us=1)
    with pytest.raises(InvalidInputError) as refused:
        outbox.append([_event("a"), NewEvent("a", "run.finished", {"bad": float("nan")})], now_us=2)
    assert refused.value.code is InputErrorCode.INVALID_PAYLOAD
    assert outbox.append([_event("a")], now_us=3).events[0].seq == 2
    assert len(outbox.next_batch("a", 10)) == 2


def test_concurrent_appends_never_share_or_skip_a_seq(tmp_path: Path) -> None:
    Outbox(tmp_path / "o.db").close()
    seqs: list[int] = []
    lock = threading.Lock()

    def producer() -> None:
        outbox = Outbox(tmp_path / "o.db")  # one connection per writer, as separate processes would have
        for n in range(25):
            result = outbox.append([_event("shared", n)], now_us=n)
            with lock:
                seqs.append(result.events[0].seq)
        outbox.close()

    threads = [threading.Thread(target=producer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seqs) == list(range(1, 101))


def test_request_id_returns_the_first_seqs_and_refuses_other_events(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    first = outbox.append(worker_snapshot("w1", "u1", "running", {}), now_us=1, request_id="req-1")
    again = outbox.append(worker_snapshot("w1", "u1", "running", {}), now_us=2, request_id="req-1")
    assert again.replayed and again.events == first.events
    assert [e.seq for e in outbox.events("runtime.worker.w1.lifecycle")] == [1]
    with pytest.raises(InvalidInputError) as conflict:
        outbox.append(worker_snapshot("w1", "u1", "stopped", {}), now_us=3, request_id="req-1")
    assert conflict.value.code is InputErrorCode.REQUEST_ID_CONFLICT


def test_acknowledged_appends_survive_reopening(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    outbox.append([run_event("r1", "run.started", {})], now_us=1)
    outbox.close()
    reopened = Outbox(tmp_path / "o.db")
    assert [(e.seq, e.kind) for e in reopened.events("runtime.run.r1.events")] == [(1, "run.started")]
    assert reopened.pending_streams() == ["runtime.run.r1.events"]


def test_batches_come_in_seq_order_and_published_rows_leave(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    for n in range(7):
        outbox.append([_event("a", n)], now_us=100 + n)
    assert [e.seq for e in outbox.next_batch("a", 3)] == [1, 2, 3]
    assert outbox.mark_published("a", 3) == [100, 101, 102]
    assert [e.seq for e in outbox.next_batch("a", 10)] == [4, 5, 6, 7]
    backlog = outbox.backlog()[0]
    assert (backlog.head_seq, backlog.published_seq, backlog.pending, backlog.oldest_appended_us) == (7, 3, 4, 103)


def test_a_dead_letter_blocks_its_stream_only_until_replayed(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    outbox.append([_event("a"), _event("b")], now_us=1)
    outbox.dead_letter("a", 1, "permanent", "payload_hash_mismatch: x", now_us=2)
    assert outbox.pending_streams() == ["b"]
    assert [d.stream_id for d in outbox.dead_letters()] == ["a"]
    assert [d.seq for d in outbox.replay("a", now_us=3)] == [1]
    assert outbox.pending_streams() == ["a", "b"]
    assert outbox.dead_letters() == [] and len(outbox.dead_letters(include_replayed=True)) == 1


def test_payload_and_hash_match_the_shared_vectors(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))["vectors"]
    outbox.append([NewEvent("v", "run.started", vector["value"]) for vector in vectors], now_us=1)
    stored = outbox.events("v")
    assert [(e.payload, e.payload_hash) for e in stored] == [(v["canonical"], v["payload_hash"]) for v in vectors]
    assert [e.idempotency_key for e in stored] == [idempotency_key("v", n) for n in range(1, len(vectors) + 1)]


def test_oversized_payload_is_refused_at_append(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", max_payload_bytes=64)
    with pytest.raises(InvalidInputError) as refused:
        outbox.append([NewEvent("a", "run.started", {"text": "x" * 100})], now_us=1)
    assert refused.value.code is InputErrorCode.PAYLOAD_TOO_LARGE
