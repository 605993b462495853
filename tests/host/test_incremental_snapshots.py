"""Incremental snapshots (format `APSSNAP4`): a snapshot of a log table holds what was appended since its base.

The promises held here: a start on a chain of incremental snapshots has every row; a trim between snapshots (heads
advanced, a partition emptied, a partition compacted) survives a restart; a crash at any point of an incremental
snapshot's write (a temporary file half written, a file renamed but not yet pruned after, a prune half done) loses
nothing; a torn or corrupt incremental snapshot is refused (`CorruptSnapshotError` where a section fails its
checksum) and the start falls back to an older snapshot and the log after it, losing nothing; and a real host
process killed with SIGKILL while it writes them loses no acknowledged commit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autopilot_sync.bindings.module import Module
from autopilot_sync.bindings.tables import TableDef
from autopilot_sync.devtools.processes import ServiceProcess, free_port, start_host
from autopilot_sync.host.call_outcome import CallStatus
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.datastore import Datastore, TableStore
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.host.logtable import COMPACT_AFTER, LogRows
from autopilot_sync.host.snapshot import Snapshot, prune_snapshots, read_header, read_snapshot, write_snapshot
from autopilot_sync.host.snapshot_section import CorruptSnapshotError
from autopilot_sync.host.transaction import Transaction
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime.values import ConnectionId, Identity

#: A log-shaped table (the sync module's `sync_event` shape) with an append that answers duplicates and a trim.
MODULE_SOURCE = """
from autopilot_sync.bindings.context import ReducerContext
from autopilot_sync.bindings.module import Module
from autopilot_sync.spacetime import algebraic as at

module = Module("incsnap")
module.table(
    "event",
    [("stream_id", at.STRING), ("seq", at.U64), ("key", at.STRING), ("body", at.STRING)],
    unique=[("stream_id", "seq")],
    indexes=[("stream_id", "key"), ("stream_id",)],
)


@module.reducer(("stream_id", at.STRING), ("first", at.U64), ("count", at.U64), ("body", at.STRING))
def append(ctx: ReducerContext, stream_id: str, first: int, count: int, body: str) -> None:
    for seq in range(first, first + count):
        key = f"{stream_id}:{seq}"
        if not ctx.db.event.filter(("stream_id", "key"), (stream_id, key)):
            ctx.db.event.insert((stream_id, seq, key, f"{body} {seq}"))


@module.reducer(("stream_id", at.STRING), ("below", at.U64))
def trim(ctx: ReducerContext, stream_id: str, below: int) -> None:
    for row in ctx.db.event.filter("stream_id", stream_id):
        if row[1] < below:
            ctx.db.event.delete(row)
"""
COLUMNS = (("stream_id", at.STRING), ("seq", at.U64), ("key", at.STRING), ("body", at.STRING))
DATABASE = "incsnap"
CALLER = Caller(Identity(7), ConnectionId(7))
BODY = "x" * 60


@pytest.fixture
def module_file(tmp_path: Path) -> Path:
    path = tmp_path / "incsnap_module.py"
    path.write_text(MODULE_SOURCE)
    return path


def load_module(path: Path) -> Module:
    spec = importlib.util.spec_from_file_location(f"incsnap_module_{abs(hash(path))}", path)
    assert spec is not None and spec.loader is not None
    loaded: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    module = loaded.module
    assert isinstance(module, Module)
    return module


CONFIG = EngineConfig(snapshot_every=4, snapshot_delta_every_bytes=1 << 30, snapshot_deltas_max=3, snapshots_kept=2)


class Model:
    """What the table must hold: per stream, the seqs appended and not trimmed."""

    def __init__(self) -> None:
        self.rows: dict[str, list[int]] = {}

    def append(self, stream: str, first: int, count: int) -> None:
        self.rows.setdefault(stream, []).extend(range(first, first + count))

    def trim(self, stream: str, below: int) -> None:
        self.rows[stream] = [seq for seq in self.rows.get(stream, []) if seq >= below]
        if not self.rows[stream]:
            del self.rows[stream]


async def call(engine: HostEngine, reducer: str, *args: object) -> None:
    outcome = await engine.call_reducer(reducer, args, CALLER)
    assert outcome.status is CallStatus.COMMITTED, outcome.message


def stored(engine: HostEngine) -> dict[str, list[int]]:
    """Every row by stream (reading each partition: a section that fails its checksum raises here)."""
    out: dict[str, list[int]] = {}
    for row_bytes in engine.datastore["event"].rows:
        row = engine.datastore["event"].rows[row_bytes]
        assert row[2] == f"{row[0]}:{row[1]}" and row[3] == f"{BODY} {row[1]}"
        out.setdefault(row[0], []).append(row[1])
    return {stream: sorted(seqs) for stream, seqs in out.items()}


def snapshot_files(data: Path) -> list[Path]:
    return sorted((data / "snapshots").glob("*.snap"))


async def history(data: Path, module: Module, rounds: int, model: Model, config: EngineConfig = CONFIG) -> None:
    """Appends to four streams, a trim now and then (heads advanced, a stream emptied), one commit a call: with
    `CONFIG` a snapshot every 4 commits, three incremental ones between whole ones."""
    engine = HostEngine(module, data, DATABASE, config)
    await engine.start()
    next_seq = {stream: max(seqs) + 1 for stream, seqs in model.rows.items()}
    for i in range(rounds):
        stream = f"s{i % 4}"
        first = next_seq.get(stream, 1)
        await call(engine, "append", stream, first, 5, BODY)
        await engine.snapshot_written()  # one every 4 commits, none skipped while one is written: a known set
        model.append(stream, first, 5)
        next_seq[stream] = first + 5
        if i % 7 == 6:
            below = first + (5 if i % 21 == 20 else 2)  # now and then the whole stream
            await call(engine, "trim", stream, below)
            await engine.snapshot_written()
            model.trim(stream, below)
    await engine.stop()


async def started(data: Path, module: Module) -> HostEngine:
    engine = HostEngine(module, data, DATABASE, CONFIG)
    await engine.start()
    return engine


async def rows_after_start(data: Path, module: Module) -> dict[str, list[int]]:
    """Start, read every row; a section refused (`CorruptSnapshotError`) means a second start must fall back."""
    engine = await started(data, module)
    try:
        return stored(engine)
    except CorruptSnapshotError:
        pass
    finally:
        await engine.stop()
    engine = await started(data, module)
    try:
        return stored(engine)
    finally:
        await engine.stop()


async def test_a_chain_of_incremental_snapshots_holds_every_row_and_each_only_what_was_appended(
    tmp_path: Path, module_file: Path
) -> None:
    module, model = load_module(module_file), Model()
    await history(tmp_path / "data", module, 30, model)
    files = snapshot_files(tmp_path / "data")
    bases = [read_header(path).base for path in files]
    assert 0 in bases and any(bases), f"whole and incremental snapshots both written: {bases}"
    newest = files[-1]
    snapshot = read_snapshot(newest)
    assert snapshot.chain == 1 + next(i for i, base in enumerate(reversed(bases)) if base == 0)
    whole = max((p for p, base in zip(files, bases, strict=True) if base == 0), key=lambda p: p.stat().st_size)
    delta = max((p for p, base in zip(files, bases, strict=True) if base), key=lambda p: p.stat().st_size)
    assert delta.stat().st_size < whole.stat().st_size, "an incremental snapshot holds only what was appended"

    engine = await started(tmp_path / "data", module)
    assert engine.recovery.snapshot_offset == int(newest.stem)
    assert stored(engine) == model.rows
    await engine.stop()


async def test_a_due_whole_snapshot_is_captured_incrementally_and_made_whole_off_the_loop(
    tmp_path: Path, module_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    module, model = load_module(module_file), Model()
    caplog.set_level(logging.INFO, "autopilot_sync.host.snapshot_scheduler")
    await history(tmp_path / "data", module, 30, model)
    assert "whole, off the loop" in caplog.text, "a whole snapshot after the first made from its chain"
    files = snapshot_files(tmp_path / "data")
    assert [read_header(path).base == 0 for path in files].count(True) >= 2
    assert read_header(files[-1]).base, "and incremental ones after it build on it"
    engine = await started(tmp_path / "data", module)
    assert stored(engine) == model.rows
    await engine.stop()


async def test_trims_between_incremental_snapshots_survive_a_restart(tmp_path: Path, module_file: Path) -> None:
    module, model = load_module(module_file), Model()
    data = tmp_path / "data"
    await history(data, module, 12, model)
    # A trim past the compaction bound (the partition is rewritten whole) and appends after it.
    engine = await started(data, module)
    await call(engine, "append", "big", 1, COMPACT_AFTER + 300, BODY)
    model.append("big", 1, COMPACT_AFTER + 300)
    for _ in range(4):
        await call(engine, "append", "s1", max(model.rows["s1"]) + 1, 1, BODY)
        model.append("s1", max(model.rows["s1"]) + 1, 1)
    await call(engine, "trim", "big", COMPACT_AFTER + 200)
    model.trim("big", COMPACT_AFTER + 200)
    await call(engine, "trim", "s1", max(model.rows["s1"]) - 1)
    model.trim("s1", max(model.rows["s1"]) - 1)
    for _ in range(4):
        await call(engine, "append", "big", max(model.rows["big"]) + 1, 2, BODY)
        model.append("big", max(model.rows["big"]) + 1, 2)
    await engine.stop()
    assert any(read_header(path).base for path in snapshot_files(data)), "incremental snapshots written"
    again = await started(data, module)
    rows = again.datastore["event"].rows
    assert isinstance(rows, LogRows)
    assert stored(again) == model.rows
    await again.stop()
    assert await rows_after_start(data, module) == model.rows


def crash_states(data: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Copies of `data` as a crash at each point of the newest (incremental) snapshot's write would leave it."""
    files = snapshot_files(data)
    newest = files[-1]
    assert read_header(newest).base, "the newest snapshot is incremental"
    body = newest.read_bytes()

    def copy(name: str) -> Path:
        target = tmp_path / "crash" / name
        shutil.copytree(data, target)
        return target

    for cut in sorted({0, 1, 20, 36, len(body) // 3, len(body) // 2, len(body) - 1, len(body)}):
        state = copy(f"tmp-{cut}")  # the temporary file written up to `cut` (fsynced or not), never renamed
        (state / "snapshots" / newest.name).unlink()
        (state / "snapshots" / f".{newest.name}.123.abcd1234.tmp").write_bytes(body[:cut])
        yield f"temporary file of {cut} bytes", state
    yield "renamed, nothing pruned yet", copy("renamed")
    whole = [path for path in files if not read_header(path).base]
    pruned = [path for path in files if path < whole[-2]]  # what the write's prune (2 whole kept) deletes
    assert len(pruned) >= 2
    state = copy("half-pruned")
    (state / "snapshots" / pruned[0].name).unlink()  # the oldest first
    yield "prune half done", state
    state = copy("pruned")
    assert prune_snapshots(state / "snapshots", keep=2) == [int(whole[-1].stem), int(whole[-2].stem)]
    yield "pruned, log not yet let go of", state


async def test_a_crash_at_every_point_of_an_incremental_snapshots_write_loses_nothing(
    tmp_path: Path, module_file: Path
) -> None:
    module, model = load_module(module_file), Model()
    data = tmp_path / "data"
    # Every snapshot and the log kept: the states before the newest write's prune and its letting go of the log.
    await history(data, module, 40, model, dataclasses.replace(CONFIG, snapshots_kept=100))
    states = list(crash_states(data, tmp_path))
    for what, state in states:
        assert await rows_after_start(state, module) == model.rows, what


def torn_and_corrupt(data: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Copies of `data` with the newest (incremental) snapshot torn at, or one byte flipped at, points across it:
    its header, head, arrays and buffers."""
    newest = snapshot_files(data)[-1]
    body = newest.read_bytes()
    points = sorted({*range(0, 48, 5), *range(48, len(body), max(1, len(body) // 40)), len(body) - 1})
    for i, point in enumerate(points):
        torn = tmp_path / "torn" / str(i)
        shutil.copytree(data, torn)
        (torn / "snapshots" / newest.name).write_bytes(body[:point])
        yield f"torn at {point} of {len(body)}", torn
        flipped = tmp_path / "flipped" / str(i)
        shutil.copytree(data, flipped)
        damaged = bytearray(body)
        damaged[point] ^= 0x5A
        (flipped / "snapshots" / newest.name).write_bytes(bytes(damaged))
        yield f"byte {point} of {len(body)} flipped", flipped


async def test_a_torn_or_corrupt_incremental_snapshot_is_refused_and_the_start_falls_back_losing_nothing(
    tmp_path: Path, module_file: Path
) -> None:
    module, model = load_module(module_file), Model()
    data = tmp_path / "data"
    await history(data, module, 14, model)
    for what, state in torn_and_corrupt(data, tmp_path):
        assert await rows_after_start(state, module) == model.rows, what


async def test_a_chain_whose_base_is_missing_is_skipped_for_an_older_snapshot(
    tmp_path: Path, module_file: Path
) -> None:
    module, model = load_module(module_file), Model()
    data = tmp_path / "data"
    await history(data, module, 17, model)
    files = snapshot_files(data)
    newest = files[-1]
    base = data / "snapshots" / f"{read_header(newest).base:020d}.snap"
    base.rename(base.with_name(base.name + ".corrupt"))  # as a section failing its checksum sets a file aside
    engine = await started(data, module)
    assert engine.recovery.snapshot_offset < int(base.stem)
    assert stored(engine) == model.rows
    await engine.stop()


async def load(
    base_url: str, worker: int, acked: list[tuple[str, int, int]], trims: list[tuple[str, int, bool]]
) -> None:
    """Append batches to one stream (and trim it now and then) until the host dies; remember what it acknowledged
    (and each trim tried: one the kill cut short may have committed)."""
    stream = f"w{worker}-{random.randrange(1 << 30)}"
    first = 1
    async with aiohttp.ClientSession() as session:
        for i in range(100_000):
            reducer, args = ("append", [stream, first, 3, BODY]) if i % 9 != 8 else ("trim", [stream, first - 4])
            if reducer == "trim":
                trims.append((stream, first - 4, False))
            try:
                async with session.post(
                    f"{base_url}/v1/database/{DATABASE}/call/{reducer}",
                    data=json.dumps(args),
                    headers={"Content-Type": "application/json"},
                ) as response:
                    if response.status != 200:
                        raise AssertionError(f"unexpected status {response.status}: {await response.text()}")
            except (TimeoutError, aiohttp.ClientError):
                return
            if reducer == "append":
                acked.append((stream, first, 3))
                first += 3
            else:
                trims[trims.index((stream, first - 4, False))] = (stream, first - 4, True)


async def test_acknowledged_commits_survive_sigkill_while_incremental_snapshots_are_written(
    tmp_path: Path, module_file: Path
) -> None:
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(module_file.parent), os.environ.get("PYTHONPATH")])),
        "AUTOPILOT_SYNC_HOST_SNAPSHOT_EVERY_COMMITS": "1000000",
        "AUTOPILOT_SYNC_HOST_SNAPSHOT_DELTA_EVERY_BYTES": "3000",
        "AUTOPILOT_SYNC_HOST_SNAPSHOT_DELTAS_MAX": "4",
        "AUTOPILOT_SYNC_HOST_SNAPSHOT_EVERY_BYTES": "60000",
    }
    data, port = tmp_path / "data", free_port()
    acked: list[tuple[str, int, int]] = []
    trims: list[tuple[str, int, bool]] = []
    incremental_seen = False
    for _cycle in range(3):
        host: ServiceProcess = start_host(data, module="incsnap_module", database=DATABASE, port=port, env=env)
        workers = [asyncio.create_task(load(host.url, w, acked, trims)) for w in range(6)]
        await asyncio.sleep(1.0 + random.random())
        incremental_seen = incremental_seen or any(read_header(p).base for p in snapshot_files(data))
        host.kill()
        await asyncio.gather(*workers)
    assert len(acked) > 30, "the load never got going"
    assert incremental_seen, "no incremental snapshot was written before a kill"
    model = Model()
    for stream, first, count in acked:
        model.append(stream, first, count)
    for stream, below, _acked in trims:
        model.trim(stream, below)
    engine = await started(data, load_module(module_file))
    rows = stored(engine)
    await engine.stop()
    missing = [(s, seq) for s, seqs in model.rows.items() for seq in seqs if seq not in set(rows.get(s, []))]
    assert not missing, f"{len(missing)} acknowledged rows lost, e.g. {missing[:3]}"
    undone = [(s, below) for s, below, ok in trims if ok and any(seq < below for seq in rows.get(s, []))]
    assert not undone, f"acknowledged trims undone: {undone[:3]}"


SnapOp = tuple[str, int, int]
snap_ops = st.lists(
    st.tuples(
        st.sampled_from(["append", "append", "append", "trim", "trim_all", "drop_last", "rollback", "snapshot"]),
        st.integers(0, 2),  # stream
        st.integers(1, 40),  # how many (rows appended, or the trim's floor)
    ),
    max_size=50,
)


@settings(max_examples=40, deadline=None)
@given(snap_ops)
def test_a_chain_of_incremental_snapshots_reads_as_the_table_on_random_operations(sequence: list[SnapOp]) -> None:
    """Appends, trims (heads advanced, a stream emptied, compactions), the last row dropped, rollbacks, and a
    snapshot now and then (at a commit, as the host takes them): each chain read back holds exactly the table."""
    table = TableDef("event", COLUMNS, unique=(("stream_id", "seq"),), indexes=(("stream_id", "key"), ("stream_id",)))
    store = TableStore(table)
    rows = store.rows
    assert isinstance(rows, LogRows)
    datastore = Datastore.__new__(Datastore)
    datastore.tables = {}
    tx = Transaction(datastore)
    base: tuple[int, int] | None = None
    offset = 0
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        for verb, stream, n in sequence:
            key = f"s{stream}"
            live = [r[1] for r in (rows[b] for b in store.indexes[("stream_id",)].lookup((key,)))]
            if verb == "append":
                first = max(live, default=0) + 1
                for seq in range(first, first + n * (COMPACT_AFTER // 20 if n == 40 else 1)):
                    tx.insert(store, (key, seq, f"{key}:{seq}", f"{BODY} {seq}"))
            elif verb in ("trim", "trim_all", "drop_last"):
                floor = n if n < 40 else max(live, default=0) - 10  # 40: all but the last 10 (a compaction)
                doomed = (
                    live if verb == "trim_all" else live[-1:] if verb == "drop_last" else [s for s in live if s < floor]
                )
                for seq in doomed:
                    tx.delete_bytes(store, store.encode((key, seq, f"{key}:{seq}", f"{BODY} {seq}")))
            elif verb == "rollback":
                tx.rollback()
            else:
                tx = Transaction(datastore)  # committed: a snapshot captures committed rows only
                offset += 1
                snapshot = Snapshot(
                    offset,
                    "h",
                    {},
                    {"event": rows.segments(base is not None)},
                    base=base[0] if base else 0,
                    base_id=base[1] if base else 0,
                )
                path = write_snapshot(directory, snapshot)
                base = (offset, read_header(path).snapshot_id)
                loaded = read_snapshot(path)
                fresh = TableStore(table)
                assert isinstance(fresh.rows, LogRows)
                fresh.rows.load_segments(loaded.logs["event"])
                assert sorted(fresh.rows.items()) == sorted(rows.items())
                assert len(fresh.rows) == len(rows)
