"""The engine's promises: atomic reducers, durable commits, exact recovery, lifecycle hooks."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path

import pytest

from autopilot_sync.bindings.context import ReducerContext
from autopilot_sync.bindings.module import Module
from autopilot_sync.examples.chat import module
from autopilot_sync.host.call_outcome import CallOutcome, CallStatus
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.commitlog import valid_end
from autopilot_sync.host.engine import ConnectionRejectedError, EngineConfig, HostEngine
from autopilot_sync.host.transaction import CommittedTx
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime.moduledef import v9
from autopilot_sync.spacetime.values import ConnectionId, Identity, SumValue, TimeDuration, Timestamp

ALICE = Caller(Identity(0xA11CE), ConnectionId(1), {"sub": "alice"})


async def started(path: Path, **config: int | bool) -> HostEngine:
    engine = HostEngine(module, path, "chat", EngineConfig(**config))  # type: ignore[arg-type]
    await engine.start()
    return engine


def people(engine: HostEngine) -> dict[str, int]:
    return {row[1]: row[2] for row in engine.datastore["person"].rows.values()}


async def test_committed_reducer_is_visible_and_logged(tmp_path: Path) -> None:
    engine = await started(tmp_path)
    outcome = await engine.call_reducer("add_person", ("ada", 36), ALICE)
    assert outcome.status is CallStatus.COMMITTED
    assert outcome.tx is not None and outcome.tx.offset == engine.offset
    assert people(engine) == {"ada": 36}
    await engine.stop()
    reopened = await started(tmp_path)
    assert people(reopened) == {"ada": 36}
    await reopened.stop()


async def test_user_error_rolls_back_every_write(tmp_path: Path) -> None:
    engine = await started(tmp_path)
    before = engine.offset
    outcome = await engine.call_reducer("fail", ("nope",), ALICE)
    assert outcome.status is CallStatus.USER_ERROR
    assert outcome.message == "nope"
    assert people(engine) == {}
    assert engine.offset == before
    outcome = await engine.call_reducer("add_people", (["a", "b", ""],), ALICE)
    assert outcome.status is CallStatus.USER_ERROR and outcome.message.startswith("invalid_name")
    assert people(engine) == {}
    await engine.stop()


async def test_unique_constraint_and_update(tmp_path: Path) -> None:
    engine = await started(tmp_path)
    assert (await engine.call_reducer("add_person", ("ada", 1), ALICE)).status is CallStatus.COMMITTED
    duplicate = await engine.call_reducer("add_person", ("ada", 2), ALICE)
    assert duplicate.status is CallStatus.USER_ERROR and duplicate.message.startswith("unique_violation")
    updated = await engine.call_reducer("set_age", ("ada", 40), ALICE)
    assert updated.tx is not None
    (change,) = updated.tx.changes
    assert [row[2] for _, row in change.inserts] == [40] and [row[2] for _, row in change.deletes] == [1]
    assert people(engine) == {"ada": 40}
    await engine.stop()


async def test_panics_unknown_reducers_and_lifecycle_calls_are_refused(tmp_path: Path) -> None:
    engine = await started(tmp_path)
    assert (await engine.call_reducer("panic", (), ALICE)).status is CallStatus.INTERNAL_ERROR
    assert (await engine.call_reducer("nope", (), ALICE)).status is CallStatus.NO_SUCH_REDUCER
    assert (await engine.call_reducer("client_connected", (), ALICE)).status is CallStatus.LIFECYCLE_REDUCER
    assert (await engine.call_reducer("add_person", ("x",), ALICE)).status is CallStatus.BAD_ARGUMENTS
    await engine.stop()


async def test_an_encoded_call_takes_the_same_checks_and_reports_only_calls_that_ran(tmp_path: Path) -> None:
    engine = await started(tmp_path)
    reported: list[str] = []
    engine.on_call = lambda name, outcome: reported.append(name)
    outcomes: list[CallOutcome] = []
    engine.start_call("nope", b"", ALICE, None, outcomes.append)
    engine.start_call("client_connected", b"", ALICE, None, outcomes.append)
    engine.start_call("add_person", b"\x01", ALICE, None, outcomes.append)
    assert [(o.status, o.offset) for o in outcomes] == [
        (CallStatus.NO_SUCH_REDUCER, 0),
        (CallStatus.LIFECYCLE_REDUCER, 0),
        (CallStatus.BAD_ARGUMENTS, 0),
    ]
    assert outcomes[1].message == "can't directly call special OnConnect lifecycle reducer"
    assert outcomes[2].message.startswith("invalid arguments for reducer add_person: ")
    args = bsatn.encode(module.reducers["add_person"].params, ("ada", 36))
    done = asyncio.get_running_loop().create_future()
    engine.start_call("add_person", args + b"trailing", ALICE, None, done.set_result)
    outcome = await done
    assert outcome.status is CallStatus.COMMITTED and people(engine) == {"ada": 36}
    assert reported == ["add_person"]
    await engine.stop()


async def test_encoded_arguments_are_decoded_once_by_the_module_and_undecodable_ones_refused_before_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = await started(tmp_path)
    decoded: list[bytes] = []
    original = bsatn.Codec.decode_prefix

    def counting(self: bsatn.Codec, data: bytes, offset: int) -> tuple[object, int]:
        decoded.append(bytes(data))
        return original(self, data, offset)

    monkeypatch.setattr(bsatn.Codec, "decode_prefix", counting)
    args = bsatn.encode(module.reducers["add_person"].params, ("ada", 36))
    done = asyncio.get_running_loop().create_future()
    engine.start_call("add_person", args, ALICE, None, done.set_result)
    assert (await done).status is CallStatus.COMMITTED
    assert decoded.count(args) == 1  # the module decodes; the engine no longer decodes a second time to check
    refused: list[CallOutcome] = []
    engine.start_call("add_person", b"\x03\x00\x00\x00ad", ALICE, None, refused.append)  # a string cut short
    (outcome,) = refused
    assert (outcome.status, outcome.offset, outcome.tx) == (CallStatus.BAD_ARGUMENTS, 0, None)
    assert outcome.message.startswith("invalid arguments for reducer add_person: ")
    assert people(engine) == {"ada": 36}
    await engine.stop()


async def test_listeners_see_durable_commits_in_order(tmp_path: Path) -> None:
    engine = await started(tmp_path)
    seen: list[CommittedTx] = []
    engine.add_commit_listener(seen.append)
    await asyncio.gather(*(engine.call_reducer("add_person", (f"p{i}", i), ALICE) for i in range(50)))
    offsets = [tx.offset for tx in seen]
    assert offsets == sorted(offsets) and len(offsets) == 50
    assert engine.durable_offset == engine.offset
    await engine.stop()


async def test_connect_rejects_and_crash_leftovers_are_disconnected(tmp_path: Path) -> None:
    engine = await started(tmp_path)
    with pytest.raises(ConnectionRejectedError, match="banned"):
        await engine.connect(Caller(Identity(5), ConnectionId(9), {"sub": "banned"}))
    await engine.connect(ALICE)
    assert len(engine.datastore["online"]) == 1
    # Simulate a crash: no disconnect, no clean stop beyond flushing the log.
    engine.commitlog.close()
    reopened = await started(tmp_path)
    assert reopened.recovery.cleaned_connections == 1
    assert len(reopened.datastore["online"]) == 0
    await reopened.stop()


async def test_snapshot_then_log_replay_restores_exact_state(tmp_path: Path) -> None:
    engine = await started(tmp_path, snapshot_every=10)
    for i in range(35):
        await engine.call_reducer("add_person", (f"p{i}", i), ALICE)
    await engine.call_reducer("delete_person", ("p3",), ALICE)
    expected = people(engine)
    await engine.stop()
    assert list((tmp_path / "snapshots").glob("*.snap"))
    reopened = await started(tmp_path)
    assert reopened.recovery.snapshot_offset > 0
    assert people(reopened) == expected
    # Auto-increment continues after restart instead of reusing ids.
    await reopened.call_reducer("add_person", ("fresh", 1), ALICE)
    ids = sorted(row[0] for row in reopened.datastore["person"].rows.values())
    assert len(ids) == len(set(ids)) and ids[-1] == 36
    await reopened.stop()


async def test_torn_tail_is_set_aside_and_reported(tmp_path: Path) -> None:
    engine = await started(tmp_path)
    for i in range(5):
        await engine.call_reducer("add_person", (f"p{i}", i), ALICE)
    await engine.stop()
    (segment,) = (tmp_path / "commitlog").glob("*.log")
    with segment.open("r+b") as handle:  # as a log appended without zeros ahead would end: inside a record
        handle.truncate(valid_end(segment))
        handle.seek(0, 2)
        handle.write(b"\x40\x00\x00\x00garbage")
    reopened = await started(tmp_path)
    assert reopened.recovery.tail is not None
    assert "torn" in reopened.recovery.tail.reason
    assert len(people(reopened)) == 5
    await reopened.call_reducer("add_person", ("after", 1), ALICE)
    await reopened.stop()
    again = await started(tmp_path)
    assert again.recovery.tail is None and len(people(again)) == 6
    await again.stop()


async def test_corrupt_record_stops_replay_without_crashing(tmp_path: Path) -> None:
    engine = await started(tmp_path)
    for i in range(5):
        await engine.call_reducer("add_person", (f"p{i}", i), ALICE)
    await engine.stop()
    (segment,) = (tmp_path / "commitlog").glob("*.log")
    data = bytearray(segment.read_bytes())
    data[valid_end(segment) - 3] ^= 0xFF  # in the last record, before the zeros written ahead
    segment.write_bytes(bytes(data))
    reopened = await started(tmp_path)
    assert reopened.recovery.tail is not None and "checksum" in reopened.recovery.tail.reason
    assert len(people(reopened)) == 4
    await reopened.stop()


async def test_scheduled_reducer_runs_once(tmp_path: Path) -> None:
    engine = await started(tmp_path)
    seen: list[CommittedTx] = []
    engine.add_commit_listener(seen.append)
    await engine.call_reducer("schedule_reminder", ("tea", 20_000), ALICE)
    for _ in range(200):
        if any(tx.reducer == "remind" for tx in seen):
            break
        await asyncio.sleep(0.01)
    # Subscribers hear of the scheduled commit on its own, without another call flushing the log.
    assert [tx.reducer for tx in seen] == ["schedule_reminder", "remind"]
    texts = [row[3] for row in engine.datastore["message"].rows.values()]
    assert texts == ["reminder: tea"]
    assert len(engine.datastore["reminder"]) == 0
    await engine.stop()


async def test_every_column_type_survives_restart(tmp_path: Path) -> None:
    engine = await started(tmp_path)
    row = (
        7, True, -128, 255, -32768, 65535, -(2**31), 2**32 - 1, -(2**63), 2**64 - 1, -(2**127), 2**128 - 1,
        -(2**255), 2**256 - 1, 1.5, -2.25, "héllo", b"\x00\xff", [1, -2], None,
        Identity(3), ConnectionId(4), Timestamp(5), TimeDuration(-6),
    )  # fmt: skip
    outcome = await engine.call_reducer("put_all_types", (row,), ALICE)
    assert outcome.status is CallStatus.COMMITTED, outcome.message
    await engine.stop()
    reopened = await started(tmp_path)
    (stored,) = reopened.datastore["all_types"].rows.values()
    assert tuple(stored) == row
    await reopened.stop()
    assert isinstance(SumValue(0), SumValue)


def _module(extra_table: bool = False, age_type: object = None) -> Module:
    from autopilot_sync.spacetime import algebraic as at

    mod = Module("evolving")
    mod.table("item", [("id", at.U64), ("age", age_type or at.U32)], primary_key="id")
    if extra_table:
        mod.table("tag", [("id", at.U64), ("label", at.STRING)], primary_key="id")

    @mod.reducer(("id", at.U64))
    def put(ctx: ReducerContext, item_id: int) -> None:
        ctx.db.item.insert((item_id, 1))

    return mod


async def test_compatible_schema_additions_start_on_existing_data_and_breaking_ones_are_refused(
    tmp_path: Path,
) -> None:
    from autopilot_sync.host.recovery import SchemaMismatchError
    from autopilot_sync.spacetime import algebraic as at

    first = HostEngine(_module(), tmp_path, "evolving", EngineConfig(snapshot_every=2))
    await first.start()
    for i in range(5):
        await first.call_reducer("put", (i,), ALICE)
    await first.stop()
    grown = HostEngine(_module(extra_table=True), tmp_path, "evolving", EngineConfig())
    await grown.start()
    assert len(grown.datastore["item"]) == 5 and len(grown.datastore["tag"]) == 0
    await grown.stop()
    broken = HostEngine(_module(extra_table=True, age_type=at.STRING), tmp_path, "evolving", EngineConfig())
    with pytest.raises(SchemaMismatchError, match="breaks it"):
        await broken.start()


async def test_a_data_directory_whose_meta_json_has_the_older_index_algorithm_form_still_opens(
    tmp_path: Path,
) -> None:
    """Earlier releases stored V9 with `{"BTree": {"columns": [0]}}` in `meta.json`; the schema hash is unchanged and
    the stored document is still read when a compatible addition is compared with it."""
    first = HostEngine(_module(), tmp_path, "evolving", EngineConfig())
    await first.start()
    await first.call_reducer("put", (1,), ALICE)
    await first.stop()
    meta_path = tmp_path / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert meta["schema"]["tables"][0]["indexes"][0]["algorithm"] == {"BTree": [0]}
    meta["schema"] = v9.legacy_hash_form(meta["schema"])
    assert meta["schema"]["tables"][0]["indexes"][0]["algorithm"] == {"BTree": {"columns": [0]}}
    meta_path.write_text(json.dumps(meta))
    same = HostEngine(_module(), tmp_path, "evolving", EngineConfig())
    await same.start()
    await same.stop()
    meta = json.loads(meta_path.read_text())
    meta["schema"] = v9.legacy_hash_form(meta["schema"])
    meta_path.write_text(json.dumps(meta))
    grown = HostEngine(_module(extra_table=True), tmp_path, "evolving", EngineConfig())
    await grown.start()
    assert len(grown.datastore["item"]) == 1
    await grown.stop()


async def test_an_outcome_that_wrote_nothing_waits_for_the_commits_it_saw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = await started(tmp_path)
    disk = threading.Event()  # test double: the disk flush finishes only when the test says so
    real_fsync = os.fsync

    def held_fsync(fd: int) -> None:
        disk.wait(10)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", held_fsync)
    try:
        calls = [
            asyncio.ensure_future(engine.call_reducer("add_person", ("ada", 36), ALICE)),
            # a no-op success (the same age again writes nothing) and an error naming the state: both saw "ada"
            asyncio.ensure_future(engine.call_reducer("set_age", ("ada", 36), ALICE)),
            asyncio.ensure_future(engine.call_reducer("add_person", ("ada", 1), ALICE)),
        ]
        done, _ = await asyncio.wait(calls, timeout=0.3)
        assert not done, "an outcome was returned before the commit it observed was durable"
        disk.set()
        first, same, clash = await asyncio.gather(*calls)
    finally:
        disk.set()
    assert first.status is same.status is CallStatus.COMMITTED
    assert same.tx is not None and not same.tx.changes and same.offset == first.offset
    assert clash.status is CallStatus.USER_ERROR and clash.offset == first.offset
    assert engine.durable_offset >= first.offset
    await engine.stop()
