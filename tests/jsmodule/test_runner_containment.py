"""The module runner: a module on the official library runs in a Node child and cannot take Python down.

Real processes: each test starts `node runner.mjs` on a module that imports the pinned `spacetimedb/server` bundle,
whose `spacetime:sys@2.0`/`@2.1` imports the runner's loader hooks resolve. Syscalls are answered by the unit-test
double `TableDouble` (the runner's own protocol and containment; the engine's answers are tested elsewhere).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from jsmodule_helpers import bsatn_note, reducer_ids
from table_double import TableDouble

from autopilot_sync.jsmodule import (
    JsCallTimeoutError,
    JsHeapLimitError,
    JsModuleLoadError,
    JsModuleRunner,
    JsReducerPanicError,
    JsRunnerCrashedError,
    JsSenderError,
    sched,
)
from autopilot_sync.jsmodule.runner import RunnerLimits

pytestmark = pytest.mark.node


def test_module_describes_itself_through_resolved_sys_imports(runner: JsModuleRunner) -> None:
    description = runner.describe()
    assert description[0] == 2  # RawModuleDef::V10, the library 2.x description
    assert set(reducer_ids(description)) >= {"add_note", "refuse", "spin"}
    assert b"note" in description


def test_reducer_inserts_a_row_through_synchronous_syscalls(runner: JsModuleRunner, tables: TableDouble) -> None:
    ids = reducer_ids(runner.describe())
    runner.call_reducer(ids["add_note"], bsatn_note(7, "hello"))
    runner.call_reducer(ids["add_note"], bsatn_note(8, "world"))
    assert tables.rows[tables.table_id("note")] == [bsatn_note(7, "hello"), bsatn_note(8, "world")]
    runner.call_reducer(ids["count_notes"], b"")
    assert (2, "added note 7") in tables.logs  # console.log → console_log at level info (2)
    assert tables.logs[-1] == (2, "notes: 2 hello,world")  # count + scan via row iterators


def test_sender_error_is_a_typed_refusal_and_the_runner_still_serves(
    runner: JsModuleRunner, tables: TableDouble
) -> None:
    ids = reducer_ids(runner.describe())
    with pytest.raises(JsSenderError, match="not allowed for this caller"):
        runner.call_reducer(ids["refuse"], b"")
    runner.call_reducer(ids["add_note"], bsatn_note(1, "after refusal"))
    assert runner.restarts == 0
    assert len(tables.rows[0]) == 1


def test_exception_in_a_reducer_is_a_typed_panic_and_the_runner_still_serves(runner: JsModuleRunner) -> None:
    ids = reducer_ids(runner.describe())
    pid = runner.pid
    with pytest.raises(JsReducerPanicError, match="TypeError: a bug in the module"):
        runner.call_reducer(ids["explode"], b"")
    runner.call_reducer(ids["empty"], b"")
    assert runner.pid == pid
    assert runner.restarts == 0


def test_infinite_loop_fails_after_the_time_limit_and_a_fresh_runner_serves(
    runner: JsModuleRunner, tables: TableDouble
) -> None:
    ids = reducer_ids(runner.describe())
    looping_pid = runner.pid
    assert looping_pid is not None
    with pytest.raises(JsCallTimeoutError, match=r"time limit of 0\.5 s"):
        runner.call_reducer(ids["spin"], b"", timeout_s=0.5)
    assert not _alive(looping_pid)
    runner.call_reducer(ids["add_note"], bsatn_note(2, "after loop"))
    assert runner.restarts == 1
    assert runner.pid != looping_pid
    assert tables.rows[0] == [bsatn_note(2, "after loop")]


def test_runaway_allocation_hits_the_heap_limit_and_a_fresh_runner_serves(runner: JsModuleRunner) -> None:
    ids = reducer_ids(runner.describe())
    with pytest.raises(JsHeapLimitError, match="heap limit of 48 MiB") as failure:
        runner.call_reducer(ids["hog"], b"", timeout_s=60.0)
    assert failure.value.returncode is not None and failure.value.returncode != 0
    runner.call_reducer(ids["empty"], b"")
    assert runner.restarts == 1


def test_runner_killed_mid_call_is_a_typed_crash_and_a_fresh_runner_serves(runner: JsModuleRunner) -> None:
    ids = reducer_ids(runner.describe())
    pid = runner.pid
    assert pid is not None
    killer = threading.Timer(0.5, os.kill, args=(pid, signal.SIGKILL))
    killer.start()
    try:
        with pytest.raises(JsRunnerCrashedError) as failure:
            runner.call_reducer(ids["sleep_a_while"], b"", timeout_s=30.0)
    finally:
        killer.join()
    assert failure.value.returncode == -signal.SIGKILL
    assert not isinstance(failure.value, JsHeapLimitError)
    runner.call_reducer(ids["empty"], b"")
    assert runner.restarts == 1


def test_runner_killed_while_idle_is_replaced_before_the_next_call(runner: JsModuleRunner) -> None:
    ids = reducer_ids(runner.describe())
    pid = runner.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    # Wait for the whole process to be gone: its main thread shows as a zombie while node's other threads still
    # exit, and until then the runner cannot tell it from a live one (a call sent then fails as a crash).
    deadline = time.monotonic() + 10
    while runner.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not runner.alive()
    runner.call_reducer(ids["empty"], b"")
    assert runner.restarts == 1
    assert runner.pid != pid


def _alive(pid: int) -> bool:
    """Whether `pid` still exists as a process that is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def test_module_that_throws_while_loading_is_a_typed_load_error(tmp_path: Path, tables: TableDouble) -> None:
    module = tmp_path / "broken.mjs"
    module.write_text("import { console_log } from 'spacetime:sys@2.0';\nthrow new RangeError('broken at import');\n")
    with pytest.raises(JsModuleLoadError, match="RangeError: broken at import"):
        JsModuleRunner(module, tables).start()


def test_unknown_syscall_module_version_is_a_typed_load_error(tmp_path: Path, tables: TableDouble) -> None:
    module = tmp_path / "future.mjs"
    module.write_text("import { datastore_clear } from 'spacetime:sys@9.9';\nexport default {};\n")
    with pytest.raises(JsModuleLoadError, match=r"unsupported syscall module version: spacetime:sys@9\.9"):
        JsModuleRunner(module, tables).start()


def test_a_failing_syscall_handler_reaches_the_module_as_a_host_error(notes_module: Path) -> None:
    class BrokenTables(TableDouble):
        """Unit-test double whose insert has a bug; everything else is the table double."""

        def handle(self, fn: str, args: list[Any], body: bytes) -> tuple[Any, bytes]:
            if fn == "datastore_insert_bsatn":
                raise KeyError("bug in the host")
            return super().handle(fn, args, body)

    with JsModuleRunner(notes_module, BrokenTables(["note"])) as runner:
        ids = reducer_ids(runner.describe())
        with pytest.raises(JsReducerPanicError, match="host failed to answer syscall datastore_insert_bsatn"):
            runner.call_reducer(ids["add_note"], bsatn_note(3, "x"))
        runner.call_reducer(ids["empty"], b"")
        assert runner.restarts == 0


def test_a_js_file_is_an_es_module_even_under_a_commonjs_package(notes_module: Path, tmp_path: Path) -> None:
    # `spacetime build` writes `.js`; a package.json saying "commonjs" next to it must not make Node misread it.
    project = tmp_path / "project"
    project.mkdir()
    (project / "package.json").write_text('{"type": "commonjs"}')
    built = project / "module.js"
    built.write_text(notes_module.read_text())
    with JsModuleRunner(built, TableDouble(["note"])) as runner:
        assert set(reducer_ids(runner.describe())) >= {"add_note", "refuse"}


def test_a_module_has_no_process_to_signal_the_host_with(runner: JsModuleRunner) -> None:
    ids = reducer_ids(runner.describe())
    with pytest.raises(JsReducerPanicError, match="ReferenceError: process is not defined"):
        runner.call_reducer(ids["signal_host"], b"")
    runner.call_reducer(ids["empty"], b"")


@pytest.mark.parametrize("builtin", ["node:child_process", "fs", "node:net"])
def test_a_module_cannot_import_nodes_builtins(tmp_path: Path, tables: TableDouble, builtin: str) -> None:
    module = tmp_path / "escape.mjs"
    module.write_text(f"import * as escape from '{builtin}';\nexport default {{ escape }};\n")
    with pytest.raises(JsModuleLoadError, match=f"a module cannot import {builtin}"):
        JsModuleRunner(module, tables).start()


def test_a_runner_that_spins_before_blocking_serves_and_is_contained_the_same(
    notes_module: Path, tables: TableDouble
) -> None:
    """`spin_us` > 0: the runner watches the doorbell before its blocking read; answers and limits are unchanged."""
    limits = RunnerLimits(heap_mb=48, call_timeout_s=3.0, spin_us=200)
    with JsModuleRunner(notes_module, tables, limits=limits) as spinning:
        ids = reducer_ids(spinning.describe())
        for n in range(20):
            spinning.call_reducer(ids["add_note"], bsatn_note(n, f"note {n}"))
        spinning.call_reducer(ids["count_notes"], b"")
        assert tables.logs[-1][1].startswith("notes: 20 note 0,note 1,")
        with pytest.raises(JsCallTimeoutError):
            spinning.call_reducer(ids["spin"], b"", timeout_s=0.5)
        spinning.call_reducer(ids["add_note"], bsatn_note(99, "after loop"))
        assert spinning.restarts == 1
        assert tables.rows[0][-1] == bsatn_note(99, "after loop")


def test_the_runner_asks_for_a_short_scheduler_slice_where_the_kernel_has_one(runner: JsModuleRunner) -> None:
    """EEVDF (Linux 6.12+) reports the slice a SCHED_OTHER task asked for; elsewhere the request is a no-op."""
    pid = runner.pid
    assert pid is not None
    probe = threading.Thread(target=lambda: results.append(sched.set_slice(0, sched.SHORT_SLICE_NS)))
    results: list[bool] = []
    probe.start()
    probe.join()
    if not results[0] or sched.slice_of(pid) is None:
        pytest.skip("this kernel or platform takes no slice requests")
    assert sched.slice_of(pid) == sched.SHORT_SLICE_NS
