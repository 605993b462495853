"""A publish swaps the running module: compatible changes keep the rows, breaking ones are refused unless the data is
deleted, and a restart runs whatever was published last (engine and data directory, no sockets)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from autopilot_sync.host.call_outcome import CallStatus
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.host.publish import ModulePublisher, ModuleSource, PublishOp, PublishRefusedError
from autopilot_sync.host.server import initial_module, source_loader
from autopilot_sync.settings.host import HostSettings

MODULES = Path(__file__).resolve().parent / "publish_modules"
V1, V2, V3 = (ModuleSource.python(f"pub_notes_v{n}") for n in (1, 2, 3))


@pytest.fixture(autouse=True)
def _installed_modules(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(MODULES))
    yield


async def _engine(data_dir: Path, module_path: str = "pub_notes_v1") -> tuple[HostEngine, ModulePublisher]:
    settings = HostSettings(data_dir=data_dir, module=module_path, database="notes")
    module, serving = initial_module(settings)
    engine = HostEngine(module, data_dir, "notes", EngineConfig(fsync=False, snapshot_every=3))
    await engine.start()
    return engine, ModulePublisher(engine, source_loader(settings), published=serving)


def engine_caller(engine: HostEngine) -> Caller:
    """The database owner, as `init` and the lane's checks run."""
    return Caller(engine.owner_identity)


def _rows(engine: HostEngine, table: str) -> list[tuple[object, ...]]:
    return sorted(tuple(row) for row in engine.datastore[table].rows.values())


async def test_a_compatible_publish_keeps_the_rows_and_a_restart_runs_the_published_module(tmp_path: Path) -> None:
    engine, publisher = await _engine(tmp_path)
    for text in ("a", "b", "c", "d"):
        assert (await engine.call_reducer("add_note", (text,), engine_caller(engine))).status is CallStatus.COMMITTED
    # A column added changes the row shape clients decode: SpacetimeDB's `BreakClients` policy, with the plan's token.
    with pytest.raises(PublishRefusedError, match="client-breaking change which is disallowed"):
        await publisher.publish(V2, None, clear=False)
    plan = (await publisher.plan(V2, None))["AutoMigrate"]
    assert plan["break_clients"] and "column note.pinned" in plan["migrate_plan"]
    with pytest.raises(PublishRefusedError, match="Token provided is invalid"):
        await publisher.publish(V2, None, clear=False, break_clients_token="0" * 64)
    result = await publisher.publish(V2, None, clear=False, break_clients_token=plan["token"])
    assert result.op is PublishOp.UPDATED and not result.cleared and result.disconnected
    assert _rows(engine, "note") == [(1, "a", False), (2, "b", False), (3, "c", False), (4, "d", False)]
    assert (await engine.call_reducer("add_pinned_note", ("e",), engine_caller(engine))).status is CallStatus.COMMITTED
    assert (await engine.call_reducer("add_tag", (5, "x"), engine_caller(engine))).status is CallStatus.COMMITTED
    await engine.stop()
    # The data directory's record wins over --module: the host restarts into v2, rows of both shapes intact.
    again, _ = await _engine(tmp_path, module_path="pub_notes_v1")
    assert again.module.name == "notes" and again.reducer("add_tag") is not None
    assert _rows(again, "note")[-1] == (5, "e", True) and len(_rows(again, "note")) == 5
    assert _rows(again, "tag") == [(5, "x")]
    await again.stop()


async def test_a_breaking_publish_is_refused_with_the_diff_and_changes_nothing(tmp_path: Path) -> None:
    engine, publisher = await _engine(tmp_path)
    await engine.call_reducer("add_note", ("kept",), engine_caller(engine))
    meta_before = (tmp_path / "meta.json").read_bytes()
    with pytest.raises(PublishRefusedError) as refused:
        await publisher.publish(V3, None, clear=False)
    assert refused.value.status == 400
    assert "Database update rejected" in refused.value.message
    assert "column note.text" in refused.value.message and "[breaking]" in refused.value.message
    assert (tmp_path / "meta.json").read_bytes() == meta_before
    assert _rows(engine, "note") == [(1, "kept")] and engine.reducer("add_note") is not None
    await engine.stop()


async def test_a_publish_whose_visibility_filter_does_not_compile_is_refused_and_changes_nothing(
    tmp_path: Path,
) -> None:
    engine, publisher = await _engine(tmp_path)
    await engine.call_reducer("add_note", ("kept",), engine_caller(engine))
    meta_before = (tmp_path / "meta.json").read_bytes()
    with pytest.raises(PublishRefusedError) as refused:
        await publisher.publish(ModuleSource.python("pub_notes_bad_filter"), None, clear=True)
    assert refused.value.status == 400
    assert "the visibility filter of `note` does not compile" in refused.value.message
    assert "author" in refused.value.message
    assert (tmp_path / "meta.json").read_bytes() == meta_before
    assert _rows(engine, "note") == [(1, "kept")] and not engine.module.visibility_filters()
    await engine.stop()


async def test_a_delete_data_publish_starts_a_new_incarnation_that_survives_restart(tmp_path: Path) -> None:
    engine, publisher = await _engine(tmp_path)
    for text in ("a", "b", "c", "d", "e"):  # snapshot_every=3: a snapshot of the old incarnation exists
        await engine.call_reducer("add_note", (text,), engine_caller(engine))
    await engine.wait_durable_offset(engine.offset)
    offset = engine.offset
    result = await publisher.publish(V3, None, clear=True)
    assert result.cleared and _rows(engine, "note") == []
    assert engine.offset == offset, "offsets keep counting: clients never see one go backwards"
    assert (await engine.call_reducer("add_note", (["x", "y"],), engine_caller(engine))).status is CallStatus.COMMITTED
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["cleared_after"] == offset and meta["incarnation"] == 1 and len(meta["schema_hashes"]) == 1
    await engine.stop()
    again, _ = await _engine(tmp_path)
    assert [(row[0], list(row[1])) for row in _rows(again, "note")] == [(1, ["x", "y"])]
    await again.stop()


async def test_delete_leaves_a_host_with_no_database_until_the_next_publish(tmp_path: Path) -> None:
    engine, publisher = await _engine(tmp_path)
    await engine.call_reducer("add_note", ("gone",), engine_caller(engine))
    await publisher.delete()
    assert not publisher.published and engine.reducer("add_note") is None
    await engine.stop()
    again, republisher = await _engine(tmp_path)
    assert not republisher.published and "note" not in again.datastore.tables
    created = await republisher.publish(V1, None, clear=False)
    assert created.op is PublishOp.CREATED and _rows(again, "note") == []
    await again.stop()
