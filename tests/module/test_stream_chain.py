"""The per-stream hash chain: the bytes pinned in docs/protocol.md, and the module keeping it through every path.

Appends link each event to the one before, a trim keeps the chain value below the new floor, a reset starts a new
epoch at its genesis value, a start that set aside a commit-log tail gives every stream a new epoch, and a data
directory written before chains existed upgrades in place with every event kept and chained.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sync_module_helpers import ADMIN, PUBLISHER, TEST_ISSUER, event

from autopilot_sync.bindings.context import ReducerContext
from autopilot_sync.bindings.module import Module
from autopilot_sync.contract import stream_chain
from autopilot_sync.devtools.stack import DATABASE, LocalStack
from autopilot_sync.devtools.trust import name_trusted_issuer
from autopilot_sync.host.call_outcome import CallStatus
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.commitlog import list_segments, valid_end
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.host.recovery import HISTORY_DISCARDED_MARKER
from autopilot_sync.module import module
from autopilot_sync.module.schema import SYNC_EVENT_INPUT
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime.values import Identity
from autopilot_sync.sync_bindings import StreamHead, SyncEvent

DOC = Path(__file__).parents[2] / "docs" / "protocol.md"


def doc_vectors() -> dict[str, Any]:
    text = DOC.read_text()
    match = re.search(r"```json stream-chain-vectors\n(.*?)```", text, re.S)
    assert match, "docs/protocol.md has no stream-chain-vectors block"
    vectors: dict[str, Any] = json.loads(match.group(1))
    return vectors


def test_the_vectors_in_the_protocol_doc_are_what_the_code_computes() -> None:
    vectors = doc_vectors()
    assert vectors["genesis"] and vectors["links"]
    for item in vectors["genesis"]:
        assert stream_chain.genesis(item["stream_id"], item["epoch"]) == item["chain"]
    for item in vectors["links"]:
        fields = (item[k] for k in ("stream_id", "epoch", "seq", "kind", "idempotency_key", "payload_hash"))
        assert stream_chain.link(item["prev"], *fields) == item["chain"]


def test_the_genesis_message_bytes_in_the_doc_hash_to_the_first_vector() -> None:
    text = " ".join(DOC.read_text().split())
    match = re.search(r"The first genesis message is ((?:`[0-9a-f]+` ?)+)", text)
    assert match
    message = bytes.fromhex("".join(re.findall(r"`([0-9a-f]+)`", match.group(1))))
    assert "sha256:" + hashlib.sha256(message).hexdigest() == doc_vectors()["genesis"][0]["chain"]


def test_chain_values_are_strict_text() -> None:
    good = stream_chain.genesis("s", 1)
    for bad in ("", good.upper(), good[:-1], "sha1:" + good[7:], good[:-1] + "g"):
        with pytest.raises(stream_chain.ChainValueError):
            stream_chain.raw(bad)


def heads(engine: HostEngine) -> dict[str, StreamHead]:
    rows = [StreamHead.from_values(row) for row in engine.datastore["stream_head"].rows.values()]
    return {row.stream_id: row for row in rows}


def events(engine: HostEngine, stream: str) -> list[SyncEvent]:
    rows = [SyncEvent.from_values(row) for row in engine.datastore["sync_event"].rows.values()]
    return sorted((row for row in rows if row.stream_id == stream), key=lambda row: row.seq)


def assert_chain_holds(engine: HostEngine, stream: str) -> None:
    """The stream verifies from its floor chain, and its head chain is its newest event's."""
    head = heads(engine)[stream]
    stored = events(engine, stream)
    assert stream_chain.first_break(head.retained_from_seq - 1, head.floor_chain, stored) is None
    assert head.head_chain == (stored[-1].chain if stored else head.floor_chain)


async def call(engine: HostEngine, reducer: str, *args: object, who: Caller = PUBLISHER) -> None:
    outcome = await engine.call_reducer(reducer, args, who)
    assert outcome.status is CallStatus.COMMITTED, outcome.message


async def test_each_appended_event_links_to_the_one_before(engine: HostEngine) -> None:
    await call(engine, "append_sync_events", [event("s", 1, {"n": 1}), event("s", 2, {"n": 2})])
    await call(engine, "append_sync_event", *event("s", 3, {"n": 3}))
    await call(engine, "append_sync_events", [event("t", 1, {"n": 1})])
    first = events(engine, "s")[0]
    assert first.epoch == 1
    assert first.chain == stream_chain.event_link(stream_chain.genesis("s", 1), first)
    assert heads(engine)["s"].floor_chain == stream_chain.genesis("s", 1)
    assert_chain_holds(engine, "s")
    assert_chain_holds(engine, "t")


async def test_a_changed_event_breaks_the_chain_at_its_seq(engine: HostEngine) -> None:
    await call(engine, "append_sync_events", [event("s", i, {"n": i}) for i in range(1, 5)])
    stored = events(engine, "s")
    forged = [*stored[:2], stored[2]._replace(kind="forged"), stored[3]]
    found = stream_chain.first_break(0, stream_chain.genesis("s", 1), forged)
    assert found is not None and found.seq == 3
    found = stream_chain.first_break(0, stream_chain.genesis("s", 1), [*stored[:1], *stored[2:]])
    assert found is not None and found.seq == 2 and "missing" in found.reason


async def test_a_trim_keeps_the_chain_value_below_the_new_floor(engine: HostEngine) -> None:
    await call(engine, "append_sync_events", [event("s", i, {"n": i}) for i in range(1, 6)])
    third = events(engine, "s")[2]
    await call(engine, "trim_stream", "s", 4, who=ADMIN)
    assert heads(engine)["s"].floor_chain == third.chain
    assert_chain_holds(engine, "s")
    await call(engine, "trim_stream", "s", 6, who=ADMIN)  # everything: the floor chain is the head's
    assert heads(engine)["s"].floor_chain == heads(engine)["s"].head_chain
    await call(engine, "append_sync_events", [event("s", 6, {"n": 6})])
    assert_chain_holds(engine, "s")


async def test_a_reset_starts_the_new_epoch_at_its_genesis_value(engine: HostEngine) -> None:
    await call(engine, "append_sync_events", [event("s", 1, {"n": 1})])
    await call(engine, "reset_stream", "s", who=ADMIN)
    head = heads(engine)["s"]
    assert head.epoch == 2 and head.head_chain == head.floor_chain == stream_chain.genesis("s", 2)
    await call(engine, "append_sync_events", [event("s", 1, {"n": 1}, key="s:1:again")])
    (first,) = events(engine, "s")
    assert first.epoch == 2 and first.chain == stream_chain.event_link(stream_chain.genesis("s", 2), first)


async def test_a_start_that_set_aside_a_log_tail_gives_every_stream_a_new_epoch(tmp_path: Path) -> None:
    engine = HostEngine(module, tmp_path, "autopilot-sync", EngineConfig(fsync=False))
    await engine.start()
    await name_trusted_issuer(engine, TEST_ISSUER)
    await call(engine, "append_sync_events", [event("s", 1, {"n": 1}), event("t", 1, {"n": 1})])
    await call(engine, "append_sync_events", [event("s", 2, {"n": 2})])
    await call(engine, "append_sync_events", [event("s", 3, {"n": 3})])
    await engine.stop()
    (_, segment), *_ = reversed(list_segments(tmp_path / "commitlog"))
    data = segment.read_bytes()
    segment.write_bytes(
        data[: valid_end(segment) - 3]
    )  # a torn last record: seq 3 (acknowledged before) is set aside at start

    restarted = HostEngine(module, tmp_path, "autopilot-sync", EngineConfig(fsync=False))
    await restarted.start()
    try:
        assert restarted.recovery.tail is not None
        after = heads(restarted)
        assert (after["s"].head_seq, after["s"].epoch) == (2, 2)
        assert after["t"].epoch == 2
        assert_chain_holds(restarted, "s")
        await call(restarted, "append_sync_events", [event("s", 3, {"other": True}, key="s:3:new")])
        newest = events(restarted, "s")[-1]
        assert newest.epoch == 2
        assert_chain_holds(restarted, "s")
    finally:
        await restarted.stop()

    again = HostEngine(module, tmp_path, "autopilot-sync", EngineConfig(fsync=False))
    await again.start()  # a clean start after that: no further bump
    try:
        assert heads(again)["s"].epoch == 2
        assert not (tmp_path / HISTORY_DISCARDED_MARKER).exists()
    finally:
        await again.stop()


async def test_a_crash_before_the_epoch_bump_committed_still_bumps_at_the_next_start(tmp_path: Path) -> None:
    """Recovery sets the tail aside at once; the marker it leaves until the start hook committed says so later."""
    engine = HostEngine(module, tmp_path, "autopilot-sync", EngineConfig(fsync=False))
    await engine.start()
    await name_trusted_issuer(engine, TEST_ISSUER)
    await call(engine, "append_sync_events", [event("s", 1, {"n": 1})])
    await engine.stop()
    (tmp_path / HISTORY_DISCARDED_MARKER).write_text("torn record (the previous start crashed before its hook)")
    restarted = HostEngine(module, tmp_path, "autopilot-sync", EngineConfig(fsync=False))
    await restarted.start()
    try:
        assert restarted.recovery.tail is None
        assert heads(restarted)["s"].epoch == 2
        assert not (tmp_path / HISTORY_DISCARDED_MARKER).exists()
    finally:
        await restarted.stop()


def legacy_module() -> Module:
    """The sync module's tables as the first release wrote them (no chain columns), with the two reducers the test
    needs under their real names and parameters, so only the chain columns differ from today's schema."""
    legacy = Module("autopilot-sync", version="1")
    legacy.table(
        "stream_head",
        [
            ("stream_id", at.STRING),
            ("head_seq", at.U64),
            ("retained_from_seq", at.U64),
            ("epoch", at.U64),
            ("updated_at", at.TIMESTAMP),
        ],
        primary_key="stream_id",
    )
    legacy.table(
        "sync_event",
        [
            ("stream_id", at.STRING),
            ("seq", at.U64),
            ("idempotency_key", at.STRING),
            ("kind", at.STRING),
            ("payload", at.STRING),
            ("payload_hash", at.STRING),
            ("published_at", at.TIMESTAMP),
            ("committed_at", at.TIMESTAMP),
        ],
        unique=[("stream_id", "seq"), ("idempotency_key",)],
    )
    for name in ("active_connection", "stream_checkpoint"):  # the first release's other tables, as they were then
        table = module.tables[name]
        columns = [column for column in table.columns if column[0] != "realm"]  # realm came with row-level security
        indexes = [group for group in table.indexes if "realm" not in group]
        legacy.table(name, columns, primary_key=table.primary_key, indexes=indexes)

    @legacy.reducer(("batch", at.array(SYNC_EVENT_INPUT)), name="append_sync_events")
    def append(ctx: ReducerContext, batch: list[tuple[Any, ...]]) -> None:
        for stream, key, kind, payload, digest, seq, published in batch:
            ctx.db.sync_event.insert((stream, seq, key, kind, payload, digest, published, ctx.timestamp))
            head = ctx.db.stream_head.find("stream_id", stream)
            if head is None:
                ctx.db.stream_head.insert((stream, seq, 1, 1, ctx.timestamp))
            else:
                ctx.db.stream_head.update((stream, seq, head[2], head[3], ctx.timestamp))

    @legacy.reducer(("stream_id", at.STRING), ("retain_from_seq", at.U64), name="trim_stream")
    def trim(ctx: ReducerContext, stream: str, retain_from: int) -> None:
        head = ctx.db.stream_head.find("stream_id", stream)
        for row in ctx.db.sync_event.range(("stream_id", "seq"), (stream, 1), (stream, retain_from - 1)):
            ctx.db.sync_event.delete(row)
        ctx.db.stream_head.update((stream, head[1], retain_from, head[3], ctx.timestamp))

    return legacy


async def test_a_data_directory_from_before_chains_upgrades_in_place(tmp_path: Path) -> None:
    old = HostEngine(legacy_module(), tmp_path, "autopilot-sync", EngineConfig(fsync=False, snapshot_every=3))
    await old.start()
    owner = Caller(Identity(0))
    for seq in range(1, 8):  # crosses snapshots: the new module reads old rows from a snapshot and from the log
        await call(old, "append_sync_events", [event("s", seq, {"n": seq}), event("t", seq, {"n": seq})], who=owner)
    await call(old, "trim_stream", "t", 3, who=owner)
    await old.stop()
    assert list((tmp_path / "snapshots").glob("*.snap")), "the fixture should include a snapshot"

    for _ in range(2):  # the second start replays the upgrade's own record over the old rows
        engine = HostEngine(module, tmp_path, "autopilot-sync", EngineConfig(fsync=False))
        await engine.start()
        try:
            assert [row.seq for row in events(engine, "s")] == list(range(1, 8))
            assert [row.seq for row in events(engine, "t")] == list(range(3, 8))
            assert [row.payload for row in events(engine, "s")] == [f'{{"n":{n}}}' for n in range(1, 8)]
            for stream in ("s", "t"):
                head = heads(engine)[stream]
                assert head.floor_chain == stream_chain.genesis(stream, 1)
                assert all(row.epoch == 1 for row in events(engine, stream))
                assert_chain_holds(engine, stream)
        finally:
            await engine.stop()

    engine = HostEngine(module, tmp_path, "autopilot-sync", EngineConfig(fsync=False))
    await engine.start()
    try:
        await name_trusted_issuer(engine, TEST_ISSUER)  # an upgraded data directory trusts no issuer until named
        await call(engine, "append_sync_events", [event("s", 8, {"n": 8})])
        assert_chain_holds(engine, "s")
    finally:
        await engine.stop()


def verify_stream(stack: LocalStack, stream: str) -> subprocess.CompletedProcess[str]:
    """`autopilot-sync verify-stream` as its own process, with a read token from the stack's control service."""
    command = [sys.executable, "-m", "autopilot_sync", "verify-stream", stream, "--url", stack.host_url]
    command += ["--control-url", stack.control_url, "--key", str(stack.key_path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


async def test_an_upgraded_data_directory_serves_verified_chains_to_a_real_client(tmp_path: Path) -> None:
    """End to end: a data dir of the first release, a real host process on today's module, and `verify-stream`
    (a real client process, over the protocol) proving every kept event's chain."""
    stack = LocalStack(tmp_path)
    old = HostEngine(legacy_module(), tmp_path / "host", DATABASE, EngineConfig(fsync=False, snapshot_every=4))
    await old.start()
    for seq in range(1, 7):
        await call(old, "append_sync_events", [event("s", seq, {"n": seq})], who=Caller(Identity(0)))
    await old.stop()
    stack.start_all(runtime=False)
    try:
        # The first release had no stream readers: after the upgrade nobody reads "s" until a producer of the
        # stream grants it (docs/security.md "Who may read"), as an operator does for streams older than the rule.
        await stack.grant_readers("s", [stack.producer_key])
        done = verify_stream(stack, "s")
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith("OK s: seq 1..6 (6 events)")
    finally:
        stack.stop_all()
