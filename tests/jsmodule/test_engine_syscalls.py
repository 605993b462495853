"""A TypeScript module on the official library runs against the engine: every syscall answered from a real datastore.

Real `node` children (marked `node`): the ABI module (`abi_module.mjs.in`) runs in a `JsModule` hosted by a real
`HostEngine` with a commit log on disk. Each test drives reducers through the engine, as the network layers do, and
reads the outcome from the engine's tables: what the module wrote through `datastore_*` syscalls, and what it saw
through scans, reported back as lines of its `audit` table.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from autopilot_sync.host.call_outcome import CallOutcome, CallStatus
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.host.js_module import JsModule
from autopilot_sync.host.sql import check_visibility_filters
from autopilot_sync.jsmodule.runner import RunnerLimits
from autopilot_sync.spacetime import moduledef as md
from autopilot_sync.spacetime.values import ConnectionId, Identity

pytestmark = pytest.mark.node

ALICE = Caller(Identity(0xA11CE), ConnectionId(7), {"sub": "alice", "iss": "https://issuer.test"})


@pytest.fixture
async def engine(abi_module: Path, tmp_path: Path) -> AsyncIterator[HostEngine]:
    module = JsModule(abi_module, limits=RunnerLimits(heap_mb=48, call_timeout_s=3.0))
    engine = HostEngine(module, tmp_path / "data", "notes", EngineConfig(fsync=False, owner_identity=Identity(0x0E)))
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()
        module.close()


def audit(engine: HostEngine) -> list[str]:
    return sorted(row[0] for row in engine.datastore["audit"].rows.values())


def notes(engine: HostEngine) -> dict[int, tuple[str, int, str, str]]:
    return {row[0]: tuple(row[1:]) for row in engine.datastore["note"].rows.values()}


async def call(engine: HostEngine, reducer: str, *args: object, caller: Caller = ALICE) -> tuple[CallStatus, str]:
    outcome = await engine.call_reducer(reducer, args, caller)
    return outcome.status, outcome.message


async def add_three(engine: HostEngine) -> None:
    for owner, rank, text, tag in (("ann", 1, "a1", "t1"), ("ann", 2, "a2", "t2"), ("bob", 1, "b1", "t3")):
        assert await call(engine, "add_note", owner, rank, text, tag) == (CallStatus.COMMITTED, "")


async def test_definition_comes_from_the_modules_own_description(engine: HostEngine) -> None:
    definition = engine.module.definition()
    assert [t.name for t in definition.tables] == ["note", "audit", "reminder", "visitor"]
    reminder = definition.table("reminder")
    assert reminder.schedule is not None and reminder.schedule.reducer == "fire_reminder"
    # The schedule column comes from the definition (not a fixed name), and the module's camelCase columns are named
    # as SpacetimeDB's default `SnakeCase` policy names them.
    assert engine.datastore["reminder"].table.column_names == ("reminder_id", "fire_at", "text")
    assert engine.datastore["reminder"].table.schedule_column == "fire_at"
    # Index names are regenerated from the canonical names (the library's own is `reminder_reminderId_idx_btree`,
    # still what it asks `index_id_from_name` for, and answered: `remind` inserts through that table view).
    assert [index.name for index in reminder.indexes] == ["reminder_reminder_id_idx_btree"]
    assert definition.reducer("on_connect").lifecycle is md.Lifecycle.ON_CONNECT
    # TypeScript row-level security is a list of SQL strings: keyed by the table it selects from, and it compiles.
    assert engine.module.visibility_filters() == {"visitor": ("SELECT * FROM visitor WHERE who = :sender",)}
    check_visibility_filters(engine.datastore)
    assert audit(engine) == ["init"]  # the init lifecycle reducer ran once, on the fresh database


async def test_insert_returns_generated_auto_increment_ids(engine: HostEngine) -> None:
    await add_three(engine)
    assert notes(engine) == {1: ("ann", 1, "a1", "t1"), 2: ("ann", 2, "a2", "t2"), 3: ("bob", 1, "b1", "t3")}


async def test_unique_violation_is_the_librarys_error_and_rolls_back(engine: HostEngine) -> None:
    await add_three(engine)
    status, message = await call(engine, "add_note", "bob", 9, "dup", "t3")
    assert status is CallStatus.INTERNAL_ERROR
    assert "UniqueAlreadyExists" in message and "note(tag)" in message
    assert len(notes(engine)) == 3
    # A module that catches the errno sees the library's own class, and its transaction goes on.
    assert await call(engine, "add_note_safely", "bob", 9, "dup", "t3") == (CallStatus.COMMITTED, "")
    assert "caught UniqueAlreadyExists" in audit(engine)


async def test_scans_by_table_point_prefix_and_range_see_the_transactions_rows(engine: HostEngine) -> None:
    await add_three(engine)
    await call(engine, "add_note", "ann", 3, "a3", "t4")
    assert await call(engine, "report", "ann", 1, 2, "t2") == (CallStatus.COMMITTED, "")
    (line,) = [a for a in audit(engine) if a.startswith("count=")]
    assert line == "count=4 all=a1,a2,a3,b1 owner=a1,a2,a3 range=a1,a2 above=a2,a3 point=a1 tag=a2"


async def test_a_small_scan_is_one_round_trip_and_its_rows_are_read_in_the_runner(engine: HostEngine) -> None:
    await add_three(engine)
    module = engine.module
    assert isinstance(module, JsModule)
    module.syscall_counts.clear()
    assert await call(engine, "report", "ann", 1, 2, "t2") == (CallStatus.COMMITTED, "")
    assert "count=3 all=a1,a2,b1 owner=a1,a2 range=a1,a2 above=a2 point=a1 tag=a2" in audit(engine)
    crossed = module.syscall_counts
    scans = sum(n for fn, n in crossed.items() if "_scan_" in fn)
    assert crossed["datastore_table_scan_bsatn"] == 1 and scans >= 5  # iter, three filters by range/point, find
    assert crossed["row_iter_bsatn_advance"] == 0 and crossed["row_iter_bsatn_close"] == 0


async def test_update_by_primary_key_and_deletes_by_point_prefix_range_and_row(engine: HostEngine) -> None:
    await add_three(engine)
    assert await call(engine, "rename", 2, "A2") == (CallStatus.COMMITTED, "")
    assert notes(engine)[2] == ("ann", 2, "A2", "t2")
    assert await call(engine, "rename", 99, "x") == (CallStatus.USER_ERROR, "no note 99")
    await call(engine, "add_note", "ann", 3, "a3", "t4")
    await call(engine, "remove_ranks", "ann", 1, 3)  # [1, 3) on the second column of (owner, rank)
    assert sorted(notes(engine)) == [3, 4]
    await call(engine, "remove_owner", "bob")  # prefix of the two-column index
    await call(engine, "remove_tag", "t4")  # point on the unique column
    await call(engine, "remove_note", 4)  # primary key, already gone
    assert notes(engine) == {}
    assert {"removed ranks 2", "removed owner 1", "removed tag true", "removed false"} <= set(audit(engine))


async def test_delete_by_equal_row_and_clear(engine: HostEngine) -> None:
    assert await call(engine, "forget_line", "init") == (CallStatus.COMMITTED, "")
    assert audit(engine) == ["forgot true"]
    assert await call(engine, "clear_audit") == (CallStatus.COMMITTED, "")
    assert audit(engine) == ["cleared 1"]


async def test_a_row_bigger_than_the_scan_buffer_is_read_after_buffer_too_small(engine: HostEngine) -> None:
    # The library's iterator buffer starts at 64 KiB: a 100 000-byte row answers `__buffer_too_small__` first.
    assert await call(engine, "big_line", 100_000) == (CallStatus.COMMITTED, "")
    assert "longest 100000" in audit(engine)


async def test_sender_error_is_the_callers_refusal_in_its_own_words(engine: HostEngine) -> None:
    assert await call(engine, "refuse") == (CallStatus.USER_ERROR, "not allowed for this caller")


async def test_undecodable_arguments_are_refused_before_the_module_runs(engine: HostEngine) -> None:
    refused: list[CallOutcome] = []
    engine.start_call("add_note", b"\x03\x00\x00\x00an", ALICE, None, refused.append)  # a string cut short
    (outcome,) = refused
    assert (outcome.status, outcome.offset) == (CallStatus.BAD_ARGUMENTS, 0)
    assert outcome.message.startswith("invalid arguments for reducer add_note: ")
    assert notes(engine) == {}
    await add_three(engine)  # the runner was never involved: it serves the next call as before


async def test_throw_is_a_panic_that_rolls_back_and_the_module_keeps_serving(engine: HostEngine) -> None:
    status, message = await call(engine, "explode")
    assert status is CallStatus.INTERNAL_ERROR
    assert message == "reducer explode panicked: TypeError: a bug in the module"
    assert "written before the throw" not in audit(engine)
    await add_three(engine)


async def test_infinite_loop_fails_the_call_rolls_back_and_a_fresh_runner_serves(engine: HostEngine) -> None:
    module = engine.module
    assert isinstance(module, JsModule)
    status, message = await call(engine, "spin")
    assert status is CallStatus.INTERNAL_ERROR and "time limit of 3 s" in message
    assert "written before the loop" not in audit(engine)
    await add_three(engine)  # table and index ids are looked up again by the new runner
    # Twice: its audit line went one way, so the timed-out run is void and the call runs again, every insert answered.
    assert module.runner.restarts == 2
    assert len(notes(engine)) == 3


async def test_runaway_allocation_fails_the_call_and_a_fresh_runner_serves(engine: HostEngine) -> None:
    module = engine.module
    assert isinstance(module, JsModule)
    module.runner.limits = RunnerLimits(heap_mb=48, call_timeout_s=60.0)
    status, message = await call(engine, "hog")
    assert status is CallStatus.INTERNAL_ERROR and "heap limit of 48 MiB" in message
    assert await call(engine, "forget_line", "init") == (CallStatus.COMMITTED, "")


async def test_identity_sender_and_jwt_payload_of_the_caller(engine: HostEngine) -> None:
    assert await call(engine, "whoami") == (CallStatus.COMMITTED, "")
    (line,) = [a for a in audit(engine) if a.startswith("sender=")]
    assert line == f"sender={Identity(0xA11CE).hex} module={Identity(0x0E).hex} sub=alice"
    internal = Caller(Identity(0x0E))
    await call(engine, "clear_audit", caller=internal)
    await call(engine, "whoami", caller=internal)
    assert f"sender={Identity(0x0E).hex} module={Identity(0x0E).hex} sub=-" in audit(engine)
    # The caller's own claims come with the call: reading them costs no round trip (the audit line goes one way).
    module = engine.module
    assert isinstance(module, JsModule)
    before = module.runner.round_trips
    assert await call(engine, "whoami") == (CallStatus.COMMITTED, "")
    assert module.runner.round_trips == before
    assert audit(engine).count(f"sender={Identity(0xA11CE).hex} module={Identity(0x0E).hex} sub=alice") == 1


async def test_client_connected_and_disconnected_run_in_the_module(engine: HostEngine) -> None:
    await engine.connect(ALICE)
    (row,) = engine.datastore["visitor"].rows.values()
    assert row[0] == ALICE.connection_id and row[1] == ALICE.identity
    assert json.loads(row[2]) == {"sub": "alice", "iss": "https://issuer.test"}
    await engine.disconnect(ALICE)
    assert not engine.datastore["visitor"].rows


async def test_scheduled_reducer_fires_from_the_definitions_schedule_column(engine: HostEngine) -> None:
    assert await call(engine, "remind", 50, "r1") == (CallStatus.COMMITTED, "")
    assert len(engine.datastore["reminder"].rows) == 1
    for _ in range(100):
        if "fired r1" in audit(engine):
            break
        await asyncio.sleep(0.05)
    assert "fired r1" in audit(engine)
    assert not engine.datastore["reminder"].rows  # a one-shot schedule's row goes with its call


async def test_interval_schedule_fires_repeatedly_until_its_row_is_deleted(
    engine: HostEngine, caplog: pytest.LogCaptureFixture
) -> None:
    def fired() -> int:
        return sum(r.getMessage().startswith("fired tick at ") for r in caplog.records)

    with caplog.at_level(logging.INFO, logger="autopilot_sync.module_log"):
        assert await call(engine, "remind_every", 30, "tick") == (CallStatus.COMMITTED, "")
        for _ in range(200):
            if fired() >= 2:
                break
            await asyncio.sleep(0.05)
        assert fired() >= 2
        assert len(engine.datastore["reminder"].rows) == 1  # an interval's row stays
        assert await call(engine, "stop_reminders") == (CallStatus.COMMITTED, "")
        stopped_at = fired()
        await asyncio.sleep(0.2)
        assert fired() == stopped_at


async def test_schedule_immediate_runs_the_reducer_after_the_transaction(engine: HostEngine) -> None:
    assert await call(engine, "echo_later", "init") == (CallStatus.COMMITTED, "")
    for _ in range(100):
        if "forgot true" in audit(engine):
            break
        await asyncio.sleep(0.05)
    assert audit(engine) == ["forgot true"]


async def test_console_output_goes_to_the_module_log_with_levels_and_the_reducer(
    engine: HostEngine, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="autopilot_sync.module_log"):
        assert await call(engine, "chatty") == (CallStatus.COMMITTED, "")
    records = [r for r in caplog.records if r.name == "autopilot_sync.module_log"]
    assert [(r.levelno, r.getMessage()) for r in records[:4]] == [
        (logging.ERROR, "an error line"),
        (logging.WARNING, "a warning line"),
        (logging.INFO, "an info line"),
        (logging.DEBUG, "a debug line"),
    ]
    assert records[4].getMessage().startswith('Timing span "work": ')
    assert {getattr(r, "reducer", None) for r in records} == {"chatty"}


async def test_data_written_by_the_module_survives_a_restart(abi_module: Path, tmp_path: Path) -> None:
    module = JsModule(abi_module)  # one module hosted by two engines in turn: its syscalls follow the new datastore
    try:
        for expected in ({1: ("ann", 1, "a1", "t1")}, {1: ("ann", 1, "a1", "t1"), 2: ("ann", 2, "a2", "t2")}):
            engine = HostEngine(module, tmp_path / "data", "notes", EngineConfig(fsync=False))
            await engine.start()
            try:
                rank = len(expected)
                outcome = await call(engine, "add_note", "ann", rank, f"a{rank}", f"t{rank}")
                assert outcome == (CallStatus.COMMITTED, "")
                assert notes(engine) == expected  # the sequence resumed after the restart
                assert audit(engine) == ["init"]  # init ran on the fresh database only
            finally:
                await engine.stop()
    finally:
        module.close()


async def test_a_restarted_runner_must_describe_the_same_module(engine: HostEngine, notes_module: Path) -> None:
    module = engine.module
    assert isinstance(module, JsModule)
    await asyncio.to_thread(shutil.copyfile, notes_module, module.path)  # the file changes under a running host
    pid = module.runner.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    for _ in range(200):
        if not module.runner.alive():
            break
        await asyncio.sleep(0.05)
    status, message = await call(engine, "forget_line", "init")
    assert status is CallStatus.INTERNAL_ERROR
    assert "different module description" in message
    assert audit(engine) == ["init"]


async def test_inserts_into_a_table_without_generated_columns_cost_no_round_trip(engine: HostEngine) -> None:
    module = engine.module
    assert isinstance(module, JsModule)
    assert await call(engine, "many_lines", 1) == (CallStatus.COMMITTED, "")  # ids resolved, runner warm
    before = module.runner.round_trips
    assert await call(engine, "many_lines", 50) == (CallStatus.COMMITTED, "")
    assert module.runner.round_trips - before <= 2
    assert sorted(line for line in audit(engine) if line.startswith("line ")) == sorted(f"line {i}" for i in range(50))
    # More queued than the runner holds back (256 KiB): flushed in the middle of the call, nothing lost or reordered.
    assert await call(engine, "many_lines", 6000) == (CallStatus.COMMITTED, "")
    assert len([line for line in audit(engine) if line.startswith("line ")]) == 6000


async def test_a_failed_one_way_insert_is_the_modules_error_where_it_inserted(
    engine: HostEngine, caplog: pytest.LogCaptureFixture
) -> None:
    # Caught: the module's catch sees the library's error class, and what it wrote around it commits once.
    with caplog.at_level(logging.DEBUG, logger="autopilot_sync.module_log"):
        assert await call(engine, "visit_twice", True) == (CallStatus.COMMITTED, "")
    assert audit(engine) == ["after the visits", "before the visits", "caught UniqueAlreadyExists", "init"]
    assert [row[2] for row in engine.datastore["visitor"].rows.values()] == ["first"]
    lines = [r.getMessage() for r in caplog.records if r.name == "autopilot_sync.module_log"]
    assert lines.count("visiting twice") == 1  # the void first run's console line is dropped with it
    # Not caught: the call fails with the insert's own error and nothing it wrote stays.
    await call(engine, "clear_audit")
    other = Caller(ALICE.identity, ConnectionId(8), ALICE.claims)
    status, message = await call(engine, "visit_twice", False, caller=other)
    assert status is CallStatus.INTERNAL_ERROR and "UniqueAlreadyExists" in message
    assert audit(engine) == ["cleared 4"] and len(engine.datastore["visitor"]) == 1


async def test_updates_without_generated_columns_cost_no_round_trip_and_fail_where_they_updated(
    engine: HostEngine,
) -> None:
    module = engine.module
    assert isinstance(module, JsModule)
    # Caught: the first update finds no visit; the module's catch sees the library's error, the rest commits once.
    first = Caller(ALICE.identity, ConnectionId(21), ALICE.claims)
    assert await call(engine, "update_visit", True, caller=first) == (CallStatus.COMMITTED, "")
    assert audit(engine) == ["after the updates", "caught NoSuchRow", "init"]
    assert [row[2] for row in engine.datastore["visitor"].rows.values()] == ["updated"]
    # Not caught: the call fails with the update's own error and nothing it wrote stays.
    status, message = await call(engine, "update_visit", False, caller=Caller(ALICE.identity, ConnectionId(22)))
    assert status is CallStatus.INTERNAL_ERROR and "NoSuchRow" in message
    assert len(engine.datastore["visitor"]) == 1
    # An update that succeeds (the visit exists) is not waited for: the insert, the update and the audit line all
    # go one way, and the call's end carries them.
    await call(engine, "clear_audit")
    before = module.runner.round_trips
    assert await call(engine, "touch_visit", caller=Caller(ALICE.identity, ConnectionId(23), ALICE.claims)) == (
        CallStatus.COMMITTED,
        "",
    )
    assert module.runner.round_trips == before
    assert [row[2] for row in engine.datastore["visitor"].rows.values()].count("touched") == 1


async def test_a_void_run_that_times_out_is_run_again_with_every_insert_answered(engine: HostEngine) -> None:
    other = Caller(ALICE.identity, ConnectionId(9), ALICE.claims)
    assert await call(engine, "visit_twice_or_spin", caller=other) == (CallStatus.COMMITTED, "")
    assert "caught UniqueAlreadyExists" in audit(engine)
    assert [row[2] for row in engine.datastore["visitor"].rows.values()] == ["first"]


async def test_point_lookups_that_keep_finding_nothing_cost_no_round_trip(engine: HostEngine) -> None:
    module = engine.module
    assert isinstance(module, JsModule)
    assert await call(engine, "lines_unless_noted", "cx", 10) == (CallStatus.COMMITTED, "")  # ids resolved, streak
    before = module.runner.round_trips
    assert await call(engine, "lines_unless_noted", "cy", 50) == (CallStatus.COMMITTED, "")
    assert module.runner.round_trips - before <= 2
    seen = sorted(line for line in audit(engine) if line.startswith("line cy "))
    assert seen == sorted(f"line cy {i}" for i in range(50))


async def test_a_lookup_sent_as_empty_that_finds_a_row_is_answered_where_the_module_looked(engine: HostEngine) -> None:
    module = engine.module
    assert isinstance(module, JsModule)
    assert await call(engine, "lines_unless_noted", "ann", 10) == (CallStatus.COMMITTED, "")  # empty lookups
    assert await call(engine, "add_note", "ann", 12, "twelve", "t12") == (CallStatus.COMMITTED, "")
    await call(engine, "clear_audit")
    # The lookup of rank 12 is sent one way as empty; the host finds the note, so the run is void and runs again.
    assert await call(engine, "lines_unless_noted", "ann", 20) == (CallStatus.COMMITTED, "")
    lines = [line for line in audit(engine) if line.startswith(("line ann ", "noted ann "))]
    assert "noted ann 12: twelve" in lines and "line ann 12" not in lines
    assert len(lines) == 20  # the void run's lines are gone with it
    # That index is answered from then on: every lookup of the next call is a round trip.
    before = module.runner.round_trips
    assert await call(engine, "lines_unless_noted", "bob", 20) == (CallStatus.COMMITTED, "")
    assert module.runner.round_trips - before >= 20
