"""`autopilot-sync verify-stream` audits a whole stream over the protocol: OK, or the first bad seq and exit 1.

The pure `audit` is checked on real rows with planted faults (a changed event, a changed payload, a missing event, a
wrong head chain); the command runs as a real process against real host and control processes, on a data directory
where one stream was tampered with behind the module's back.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from autopilot_sync.contract.canonical import hash_value
from autopilot_sync.desktop.stream_audit import audit
from autopilot_sync.devtools.stack import DATABASE, LocalStack
from autopilot_sync.devtools.trust import name_trusted_issuer
from autopilot_sync.host.call_outcome import CallStatus
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.host.transaction import Transaction
from autopilot_sync.module import module
from autopilot_sync.spacetime.values import ConnectionId, Identity, Timestamp
from autopilot_sync.sync_bindings import AppendSyncEventsBatchItem, StreamHead, SyncEvent

pytestmark = pytest.mark.timeout(240)

#: The issuer of the test publisher's claims, which every engine here names as trusted (the module fails closed).
ISSUER = "https://control.test"
PUBLISHER = Caller(
    Identity(1), ConnectionId(1), {"iss": ISSUER, "sub": "00" * 32, "scopes": ["sync.append", "sync.admin"]}
)


def event(stream: str, seq: int) -> AppendSyncEventsBatchItem:
    text, digest = hash_value({"seq": seq})
    return AppendSyncEventsBatchItem(
        stream_id=stream,
        idempotency_key=f"{stream}:{seq}",
        kind="test.event",
        payload=text,
        payload_hash=digest,
        expected_seq=seq,
        published_at=Timestamp(1_700_000_000_000_000),
    )


async def fill(engine: HostEngine, stream: str, count: int, trim_to: int = 1) -> None:
    outcome = await engine.call_reducer(
        "append_sync_events", ([event(stream, s) for s in range(1, count + 1)],), PUBLISHER
    )
    assert outcome.status is CallStatus.COMMITTED, outcome.message
    if trim_to > 1:
        outcome = await engine.call_reducer("trim_stream", (stream, trim_to), PUBLISHER)
        assert outcome.status is CallStatus.COMMITTED, outcome.message


async def tamper(engine: HostEngine, stream: str, seq: int, **changes: Any) -> None:
    """Rewrite one stored event behind the module's back (what a damaged or forged copy would hold)."""
    store = engine.datastore["sync_event"]
    stored = [SyncEvent.from_values(r) for r in store.rows.values()]
    (row,) = [r for r in stored if r.stream_id == stream and r.seq == seq]

    def rewrite(tx: Transaction) -> None:
        tx.delete_bytes(store, store.encode(row))
        tx.insert(store, row._replace(**changes))

    outcome, sequence = engine.run_transaction(None, (), Caller(Identity(0)), extra=rewrite)
    assert outcome.status is CallStatus.COMMITTED, outcome.message
    assert sequence is not None
    await engine.commitlog.wait_durable(sequence)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[HostEngine]:
    running = HostEngine(module, tmp_path, DATABASE, EngineConfig(fsync=False))
    await running.start()
    await name_trusted_issuer(running, ISSUER)
    yield running
    await running.stop()


def rows(engine: HostEngine, stream: str) -> tuple[StreamHead, list[SyncEvent]]:
    heads = [StreamHead.from_values(r) for r in engine.datastore["stream_head"].rows.values()]
    events = [SyncEvent.from_values(r) for r in engine.datastore["sync_event"].rows.values()]
    (head,) = [r for r in heads if r.stream_id == stream]
    return head, [r for r in events if r.stream_id == stream]


async def test_a_whole_stream_verifies_from_its_retained_floor(engine: HostEngine) -> None:
    await fill(engine, "s", 8, trim_to=4)
    result = audit(*rows(engine, "s"))
    assert result.ok and (result.first_seq, result.head_seq, result.events) == (4, 8, 5)
    assert result.render().startswith("OK s: seq 4..8 (5 events)")


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"kind": "forged"}, "links to"),
        ({"payload": '{"seq":99}'}, "payload does not hash"),
        ({"chain": "sha256:" + "0" * 64}, "links to"),
    ],
)
async def test_the_first_changed_event_is_named(engine: HostEngine, changes: dict[str, Any], why: str) -> None:
    await fill(engine, "s", 6)
    await tamper(engine, "s", 3, **changes)
    result = audit(*rows(engine, "s"))
    assert not result.ok and result.bad_seq == 3 and why in result.reason
    assert result.render().startswith("BROKEN s at seq 3:")


async def test_a_missing_event_and_a_wrong_head_chain_are_breaks(engine: HostEngine) -> None:
    await fill(engine, "s", 5)
    head, events = rows(engine, "s")
    missing = audit(head, [e for e in events if e.seq != 4])
    assert missing.bad_seq == 4 and "missing" in missing.reason
    short = audit(head, [e for e in events if e.seq != 5])
    assert short.bad_seq == 5
    wrong_head = audit(head._replace(head_chain=events[0].chain), events)
    assert wrong_head.bad_seq == 5 and "head_chain" in wrong_head.reason


def verify(stack: LocalStack, stream: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "autopilot_sync",
        "verify-stream",
        stream,
        "--url",
        stack.host_url,
        "--control-url",
        stack.control_url,
        "--key",
        str(stack.key_path),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


async def test_verify_stream_prints_ok_or_the_first_bad_seq_against_a_running_host(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path)
    prepared = HostEngine(module, tmp_path / "host", DATABASE, EngineConfig(fsync=False))
    await prepared.start()
    await name_trusted_issuer(prepared, ISSUER)  # the stack names its control again when it starts
    await fill(prepared, "good", 6, trim_to=3)
    await fill(prepared, "bad", 6)
    await tamper(prepared, "bad", 4, kind="forged")
    await prepared.stop()
    stack.start_all(runtime=False)
    try:
        for stream in ("good", "bad"):
            await stack.grant_readers(stream, [stack.producer_key])
        good = verify(stack, "good")
        assert good.returncode == 0, good.stdout + good.stderr
        assert good.stdout.startswith("OK good: seq 3..6 (4 events)")
        bad = verify(stack, "bad")
        assert bad.returncode == 1, bad.stdout + bad.stderr
        assert bad.stdout.startswith("BROKEN bad at seq 4:")
        unknown = verify(stack, "nope")
        assert unknown.returncode == 2 and "no stream_head row" in unknown.stderr
    finally:
        stack.stop_all()
