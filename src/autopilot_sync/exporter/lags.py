"""Per-stream lag and replay gap of the sync module, pure: rows in, numbers and Prometheus families out.

What on-call needs from `stream_head` (where each stream is), `stream_checkpoint` (where each reader says it is) and
`active_connection` (who is connected): how far the slowest *connected* reader trails the head, and how much history
it needs that retention already deleted. The exporter (`exporter/service.py`) feeds these functions the rows it
holds by subscription, at scrape time, so nothing is cached beyond the subscription itself.

Readers are restricted to identities with an open connection: a desktop that has been closed for a week
legitimately trails by a week, and counting it would make the lag alert fire forever. Series exist only for streams
that a connected reader has acknowledged, which bounds them by what is being watched, not by every run that ever
existed. The summary gauges (`..._streams`, `..._max`) are always exported. The names keep their `host` prefix:
they describe the sync tables wherever they are served, and alerts and dashboards use them unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

_STREAM = ["stream_id"]


@dataclass(frozen=True, slots=True)
class StreamHead:
    """The part of a `stream_head` row the gauges need."""

    stream_id: str
    head_seq: int
    retained_from_seq: int


@dataclass(frozen=True, slots=True)
class StreamLag:
    """The slowest connected reader of one stream: what the per-stream gauges export.

    `sequence_lag` = head - the lowest connected checkpoint (events not yet applied by the slowest live reader);
    `replay_gap` = events that reader still needs but the host no longer retains (> 0 means a stale cursor: the
    desktop must rebuild that stream from the retained floor).
    """

    stream_id: str
    head_seq: int
    retained_from_seq: int
    readers: int
    sequence_lag: int
    replay_gap: int


def stream_lags(
    heads: Iterable[StreamHead], checkpoints: Iterable[tuple[Any, str, int]], connected: set[Any]
) -> list[StreamLag]:
    """Pure core: per stream with at least one connected reader, its readers, lag and replay gap.

    `checkpoints` are `(identity, stream_id, seq)`; `connected` holds the identities with an open connection.
    A checkpoint for a stream without a head (cannot happen through the module's reducers) is ignored.
    """
    by_stream = {head.stream_id: head for head in heads}
    lowest: dict[str, int] = {}
    readers: dict[str, int] = {}
    for identity, stream_id, seq in checkpoints:
        if identity not in connected or stream_id not in by_stream:
            continue
        readers[stream_id] = readers.get(stream_id, 0) + 1
        lowest[stream_id] = min(seq, lowest.get(stream_id, seq))
    out: list[StreamLag] = []
    for stream_id in sorted(lowest):
        head = by_stream[stream_id]
        seq = lowest[stream_id]
        out.append(
            StreamLag(
                stream_id=stream_id,
                head_seq=head.head_seq,
                retained_from_seq=head.retained_from_seq,
                readers=readers[stream_id],
                sequence_lag=max(0, head.head_seq - seq),
                replay_gap=max(0, head.retained_from_seq - 1 - seq),
            )
        )
    return out


def stream_families(lags: list[StreamLag], streams: int) -> Iterator[Metric]:
    """The Prometheus families of `lags` (per stream) and the summary gauges; `streams` = `stream_head` rows."""
    head = GaugeMetricFamily(
        "autopilot_sync_host_stream_head_seq", "Newest seq of a stream with a connected reader.", labels=_STREAM
    )
    floor = GaugeMetricFamily(
        "autopilot_sync_host_stream_retained_from_seq",
        "Oldest seq the host still stores for a stream with a connected reader.",
        labels=_STREAM,
    )
    readers = GaugeMetricFamily(
        "autopilot_sync_host_stream_connected_readers",
        "Connected identities that have acknowledged a checkpoint on the stream.",
        labels=_STREAM,
    )
    lag = GaugeMetricFamily(
        "autopilot_sync_host_stream_sequence_lag",
        "Head seq minus the lowest checkpoint of a connected reader (events the slowest live reader lacks).",
        labels=_STREAM,
    )
    gap = GaugeMetricFamily(
        "autopilot_sync_host_stream_replay_gap",
        "Events the slowest connected reader still needs that retention deleted (> 0: stale cursor, rebuild).",
        labels=_STREAM,
    )
    for item in lags:
        head.add_metric([item.stream_id], item.head_seq)
        floor.add_metric([item.stream_id], item.retained_from_seq)
        readers.add_metric([item.stream_id], item.readers)
        lag.add_metric([item.stream_id], item.sequence_lag)
        gap.add_metric([item.stream_id], item.replay_gap)
    yield from (head, floor, readers, lag, gap)
    yield GaugeMetricFamily("autopilot_sync_host_streams", "Streams with a stream_head row.", value=streams)
    yield GaugeMetricFamily(
        "autopilot_sync_host_stream_sequence_lag_max",
        "Largest sequence lag of any stream (0 without connected readers).",
        value=max((item.sequence_lag for item in lags), default=0),
    )
    yield GaugeMetricFamily(
        "autopilot_sync_host_stream_replay_gap_max",
        "Largest replay gap of any stream (0 without connected readers).",
        value=max((item.replay_gap for item in lags), default=0),
    )
