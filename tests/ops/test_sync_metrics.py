"""Per-stream lag and replay gap, computed from the sync module's own tables at scrape time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from autopilot_sync.examples.chat import module as chat_module
from autopilot_sync.host.datastore import Datastore
from autopilot_sync.host.sync_metrics import StreamHead, register_sync_metrics, stream_lags
from autopilot_sync.host.system_tables import SYSTEM_TABLES
from autopilot_sync.module import module as sync_module
from autopilot_sync.spacetime.values import ConnectionId, Identity, Timestamp

ALICE, BOB, GONE = Identity(1), Identity(2), Identity(3)


def test_lag_is_measured_against_the_slowest_connected_reader_only() -> None:
    heads = [StreamHead("runs", 100, 1), StreamHead("idle", 7, 1)]
    checkpoints = [(ALICE, "runs", 90), (BOB, "runs", 40), (GONE, "runs", 2)]
    (runs,) = stream_lags(heads, checkpoints, connected={ALICE, BOB})
    assert (runs.stream_id, runs.readers, runs.sequence_lag, runs.replay_gap) == ("runs", 2, 60, 0)


def test_a_cursor_below_the_retained_floor_is_a_replay_gap() -> None:
    (lag,) = stream_lags([StreamHead("runs", 500, 201)], [(ALICE, "runs", 150)], connected={ALICE})
    assert lag.replay_gap == 50  # events 151..200 are gone
    (fresh,) = stream_lags([StreamHead("runs", 500, 201)], [(ALICE, "runs", 200)], connected={ALICE})
    assert fresh.replay_gap == 0


def _put(store: Datastore, table: str, row: tuple[object, ...]) -> None:
    tables = store[table]
    tables.put(tables.encode(row), tables.decode(tables.encode(row)))


def test_collector_exports_the_tables_as_they_are_at_scrape_time() -> None:
    datastore = Datastore(sync_module, SYSTEM_TABLES)
    registry = CollectorRegistry()
    assert register_sync_metrics(registry, datastore) is not None
    now = Timestamp(1_700_000_000_000_000)
    _put(datastore, "stream_head", ("runs", 100, 1, 1, now, "", ""))  # chain columns: unused here
    _put(datastore, "active_connection", (ConnectionId(1), ALICE, "", "", "desktop", now, now, "sync"))
    _put(datastore, "stream_checkpoint", (f"{ALICE.hex}:runs", ALICE, "runs", 25, now))
    text = generate_latest(registry).decode()
    assert 'autopilot_sync_host_stream_sequence_lag{stream_id="runs"} 75.0' in text
    assert 'autopilot_sync_host_stream_connected_readers{stream_id="runs"} 1.0' in text
    assert "autopilot_sync_host_streams 1.0" in text
    assert "autopilot_sync_host_stream_sequence_lag_max 75.0" in text
    _put(datastore, "stream_checkpoint", (f"{ALICE.hex}:runs", ALICE, "runs", 100, now))
    datastore["stream_checkpoint"].take(
        datastore["stream_checkpoint"].encode((f"{ALICE.hex}:runs", ALICE, "runs", 25, now))
    )
    assert 'autopilot_sync_host_stream_sequence_lag{stream_id="runs"} 0.0' in generate_latest(registry).decode()


def test_nothing_is_registered_for_a_module_without_streams() -> None:
    registry = CollectorRegistry()
    assert register_sync_metrics(registry, Datastore(chat_module, SYSTEM_TABLES)) is None
    assert "stream" not in generate_latest(registry).decode()
