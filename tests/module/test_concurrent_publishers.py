"""Concurrent publishers to one stream can never create a gap or a duplicate seq, whatever the interleaving and retries.

A property test drives the real module in the real engine through random interleavings (hypothesis), and a process
test races real publishers over WebSockets against a real host with control-issued tokens.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sync_module_helpers import TEST_ISSUER, caller, event

from autopilot_sync.client import ReducerCommitted, ReducerFailed, connect
from autopilot_sync.contract.codes import SyncErrorCode, parse_error_code
from autopilot_sync.control.client import fetch_session_token
from autopilot_sync.devtools.stack import DATABASE, LocalStack
from autopilot_sync.devtools.trust import name_trusted_issuer
from autopilot_sync.host.call_outcome import CallStatus
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.module import module
from autopilot_sync.spacetime.values import Identity
from autopilot_sync.sync_bindings import AppendSyncEventsBatchItem, StreamHead, SyncEvent

STREAM = "race"


@dataclass
class Publisher:
    """One producer: its own events (keys `p<i>:<n>`), its belief about the head, and what it was acknowledged."""

    index: int
    believed_head: int = 0
    next_event: int = 0
    pending: AppendSyncEventsBatchItem | None = None
    acknowledged: list[str] = field(default_factory=list)

    def attempt(self) -> AppendSyncEventsBatchItem:
        """The event to send now: a retry of the pending one, or the next one at the believed head."""
        if self.pending is None:
            key = f"p{self.index}:{self.next_event}"
            self.pending = event(STREAM, self.believed_head + 1, {"p": self.index, "n": self.next_event}, key=key)
        return self.pending

    def committed(self) -> None:
        assert self.pending is not None
        self.acknowledged.append(self.pending.idempotency_key)
        self.believed_head = max(self.believed_head, self.pending.expected_seq)
        self.pending = None
        self.next_event += 1

    def conflicted(self, head: int) -> None:
        """Sequence conflict: move to the real head and rebuild the pending event there (same key, same payload)."""
        self.believed_head = head
        if self.pending is not None:
            self.pending = self.pending._replace(expected_seq=head + 1)


def assert_gap_free(rows: list[tuple[int, str]], acknowledged: list[str]) -> None:
    """Seqs are exactly 1..n, every key once, every acknowledged key present."""
    seqs = sorted(seq for seq, _ in rows)
    keys = [key for _, key in rows]
    assert seqs == list(range(1, len(rows) + 1)), f"gap or duplicate seq: {seqs}"
    assert len(keys) == len(set(keys)), "an idempotency key was committed twice"
    assert set(acknowledged) <= set(keys), "an acknowledged event is missing"


steps = st.lists(
    st.tuples(st.integers(0, 3), st.sampled_from(["send", "send", "retry_lost_ack", "refresh"])), max_size=60
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=steps, concurrent=st.booleans())
def test_random_interleavings_never_gap_or_duplicate(plan: list[tuple[int, str]], concurrent: bool) -> None:
    asyncio.run(_interleave(plan, concurrent))


async def _interleave(plan: list[tuple[int, str]], concurrent: bool) -> None:
    with tempfile.TemporaryDirectory() as data:
        engine = HostEngine(module, Path(data), DATABASE, EngineConfig(fsync=False))
        await engine.start()
        await name_trusted_issuer(engine, TEST_ISSUER)
        who = caller(["sync.append", "sync.subscribe"])
        publishers = [Publisher(i) for i in range(4)]

        def head() -> int:
            heads = [StreamHead.from_values(r) for r in engine.datastore["stream_head"].rows.values()]
            return next((h.head_seq for h in heads if h.stream_id == STREAM), 0)

        async def step(publisher: Publisher, action: str) -> None:
            if action == "refresh":
                publisher.conflicted(head())
                return
            outcome = await engine.call_reducer("append_sync_events", ([publisher.attempt()],), who)
            if outcome.status is CallStatus.COMMITTED:
                if action == "retry_lost_ack":
                    return  # the ack was lost: the publisher retries the same event later
                publisher.committed()
                return
            assert parse_error_code(outcome.message) is SyncErrorCode.SEQUENCE_CONFLICT, outcome.message
            publisher.conflicted(head())

        if concurrent:
            for round_start in range(0, len(plan), 4):
                # One call in flight per publisher (each is sequential), racing the other publishers' calls.
                chunk = dict(plan[round_start : round_start + 4])
                await asyncio.gather(*(step(publishers[i], action) for i, action in chunk.items()))
        else:
            for i, action in plan:
                await step(publishers[i], action)
        # Drain: every publisher retries until its pending event is acknowledged.
        for publisher in publishers:
            for _ in range(100):
                if publisher.pending is None:
                    break
                await step(publisher, "send")
        stored = [SyncEvent.from_values(r) for r in engine.datastore["sync_event"].rows.values()]
        rows = [(r.seq, r.idempotency_key) for r in stored if r.stream_id == STREAM]
        assert_gap_free(rows, [key for p in publishers for key in p.acknowledged])
        assert head() == len(rows)
        await engine.stop()


async def test_publishers_racing_over_websockets_against_a_real_host(tmp_path: Path, served_module: str) -> None:
    stack = LocalStack(tmp_path, module=served_module)
    stack.start_all(runtime=False)
    try:
        grant = await fetch_session_token(
            stack.control_url, stack.producer_key, ("sync.append", "sync.subscribe"), (STREAM,), None, "test"
        )
        rng = random.Random(7)
        publishers = [Publisher(i) for i in range(4)]
        # a producer reads the head it reconciles with as a reader of its stream (row-level security)
        setup = await connect(stack.host_url, DATABASE, token=grant.token)
        granted = await setup.call("grant_stream_readers", STREAM, [Identity.from_hex(grant.identity)])
        assert isinstance(granted, ReducerCommitted), granted
        await setup.close()

        async def run(publisher: Publisher) -> None:
            connection = await connect(stack.host_url, DATABASE, token=grant.token)
            try:
                while publisher.next_event < 25:
                    outcome = await connection.call("append_sync_events", [publisher.attempt()])
                    if isinstance(outcome, ReducerCommitted):
                        if rng.random() < 0.2:
                            continue  # pretend the ack was lost: retry the same event
                        publisher.committed()
                        continue
                    assert isinstance(outcome, ReducerFailed) and outcome.code is SyncErrorCode.SEQUENCE_CONFLICT
                    heads = await connection.one_off_query(f"SELECT * FROM stream_head WHERE stream_id = '{STREAM}'")
                    rows = heads.rows("stream_head")
                    publisher.conflicted(StreamHead.from_values(rows[0]).head_seq if rows else 0)
            finally:
                await connection.close()

        await asyncio.gather(*(run(p) for p in publishers))
        reader = await connect(stack.host_url, DATABASE, token=grant.token)
        try:
            answer = await reader.one_off_query(f"SELECT * FROM sync_event WHERE stream_id = '{STREAM}'")
        finally:
            await reader.close()
        committed = [SyncEvent.from_values(r) for r in answer.rows("sync_event")]
        rows = [(r.seq, r.idempotency_key) for r in committed]
        assert len(rows) == 100
        assert_gap_free(rows, [key for p in publishers for key in p.acknowledged])
    finally:
        stack.stop_all()
