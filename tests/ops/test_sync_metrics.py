"""Per-stream lag and replay gap: the exporter's pure core (rows in, numbers and families out)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from autopilot_sync.exporter.lags import StreamHead, stream_families, stream_lags
from autopilot_sync.spacetime.values import Identity

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


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def test_families_export_the_lags_with_their_documented_names() -> None:
    heads = [StreamHead("runs", 100, 1), StreamHead("idle", 7, 1)]
    lags = stream_lags(heads, [(ALICE, "runs", 25)], connected={ALICE})
    registry = CollectorRegistry()
    registry.register(_Families(list(stream_families(lags, len(heads)))))
    text = generate_latest(registry).decode()
    assert 'autopilot_sync_host_stream_sequence_lag{stream_id="runs"} 75.0' in text
    assert 'autopilot_sync_host_stream_connected_readers{stream_id="runs"} 1.0' in text
    assert "autopilot_sync_host_streams 2.0" in text
    assert "autopilot_sync_host_stream_sequence_lag_max 75.0" in text
    assert 'stream_id="idle"' not in text  # no connected reader: no series
