"""The module log store (`host/module_log.py`): bounded on disk, records shaped as SpacetimeDB's, only the module's.

Unit tests over real files; the route and the CLI over a real host process are in tests/dbcli/test_commands.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from autopilot_sync.host import module_log
from autopilot_sync.host.module_log import MAX_MESSAGE_CHARS, ModuleLog


@pytest.fixture
def kept(tmp_path: Path) -> Iterator[ModuleLog]:
    log = ModuleLog(tmp_path / "logs", max_bytes=4096)
    handler = module_log.install("db", log)
    try:
        yield log
    finally:
        module_log.uninstall(handler)


def _messages(log: ModuleLog, num_lines: int | None = None) -> list[str]:
    return [json.loads(line)["message"] for line in log.tail(num_lines)]


def test_the_log_rotates_at_its_cap_so_disk_use_stays_under_twice_the_cap(kept: ModuleLog) -> None:
    for i in range(2000):
        with module_log.running("db", "spam"):
            logging.getLogger("some.module").warning("line %d %s", i, "x" * 40)
    sizes = [path.stat().st_size for path in kept.path.parent.iterdir()]
    assert sorted(p.name for p in kept.path.parent.iterdir()) == ["module.log", "module.log.1"]
    assert all(size <= 4096 for size in sizes) and sum(sizes) <= 2 * 4096
    newest = _messages(kept)
    assert newest[-1].startswith("line 1999 ") and len(newest) < 2000
    assert [int(m.split()[1]) for m in newest] == list(range(2000 - len(newest), 2000)), "a contiguous newest tail"
    assert _messages(kept, 3) == newest[-3:]
    assert _messages(kept, 0) == []


def test_only_the_modules_lines_are_kept_and_a_long_message_is_cut(kept: ModuleLog) -> None:
    logging.getLogger("autopilot_sync.host.engine").warning("the host's own line")
    with module_log.running("other-db", "r"):
        logging.getLogger("x").warning("another database's module")
    with module_log.running("db", "mine"):
        logging.getLogger("x").warning("%s", "y" * (MAX_MESSAGE_CHARS + 10))
    logging.getLogger(module_log.MODULE_LOGGER).info("from console.log", extra={"reducer": "js_reducer"})
    records = [json.loads(line) for line in kept.tail(None)]
    assert [r["function"] for r in records] == ["mine", "js_reducer"]
    assert records[0]["message"].endswith("(truncated)") and len(records[0]["message"]) < MAX_MESSAGE_CHARS + 20
    assert records[1] == {k: records[1][k] for k in ("level", "ts", "function", "message")}
    assert records[1]["level"] == "Info"


def test_reducer_failures_are_injected_error_and_panic_records(kept: ModuleLog) -> None:
    module_log.reducer_failed("db", "add", "invalid_name: name must not be empty")
    try:
        raise RuntimeError("deliberate")
    except RuntimeError as exc:
        module_log.reducer_panicked("db", "boom", exc)
    error, panic = (json.loads(line) for line in kept.tail(None))
    assert (error["level"], error["target"], error["filename"], error["function"]) == (
        "Error",
        "__spacetimedb__",
        "__spacetimedb__",
        "add",
    )
    assert next(iter(error)) == "level", "the tag comes first, as serde's internally tagged enum writes it"
    assert (panic["level"], panic["function"], panic["message"]) == ("Panic", "boom", "deliberate")
    assert panic["trace"][0]["func_name"] == "test_reducer_failures_are_injected_error_and_panic_records"


async def test_a_follower_gets_the_tail_then_every_later_line_once(kept: ModuleLog) -> None:
    for i in range(5):
        logging.getLogger(module_log.MODULE_LOGGER).info("before %d", i)
    with kept.follow(2) as (tail, queue):
        lines = b"".join(tail).splitlines()
        assert [json.loads(line)["message"] for line in lines] == ["before 3", "before 4"]
        logging.getLogger(module_log.MODULE_LOGGER).info("after")
        line = await asyncio.wait_for(queue.get(), 5)
        assert json.loads(line)["message"] == "after"
        assert queue.empty()
    with kept.follow(None) as (tail, _):
        assert list(tail) == []
    assert kept.followers == 0


def test_the_last_n_lines_are_exact_across_the_rotated_file_whatever_n(tmp_path: Path) -> None:
    log = ModuleLog(tmp_path / "logs", max_bytes=2000)
    handler = module_log.install("db", log)
    try:
        for i in range(60):
            logging.getLogger(module_log.MODULE_LOGGER).info("n%d %s", i, "z" * (i % 7) * 10)
        everything = log.tail(None)
        assert log.rotated.exists() and len(everything) < 60
        for n in range(len(everything) + 5):
            assert log.tail(n) == (everything[-n:] if n else []), n
    finally:
        module_log.uninstall(handler)


def test_a_record_cut_short_by_a_crash_does_not_swallow_the_next(tmp_path: Path) -> None:
    directory = tmp_path / "logs"
    directory.mkdir()
    (directory / "module.log").write_bytes(b'{"level":"Info","message":"whole"}\n{"level":"Info","mess')
    log = ModuleLog(directory)
    handler = module_log.install("db", log)
    try:
        logging.getLogger(module_log.MODULE_LOGGER).warning("after the crash")
        lines = log.tail(None)
        assert json.loads(lines[-1])["message"] == "after the crash"
        assert log.tail(1) == lines[-1:] and len(lines) == 3
    finally:
        module_log.uninstall(handler)
