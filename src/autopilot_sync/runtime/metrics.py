"""Prometheus metrics of the runtime, in a registry of its own (one per app, so tests and benches never collide).

Counters move as things happen; the per-stream outbox gauges are recomputed from the outbox at each scrape
(`observe_backlog`), so they are never out of step with what is on disk. Per-stream series exist only for streams
that have unpublished events or an open dead letter, which keeps the number of series bounded by the backlog.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from autopilot_sync.runtime.outbox import StreamBacklog
from autopilot_sync.runtime.retry import RetryClass
from autopilot_sync.runtime.streams import FLEET_PREFIX, RUN_PREFIX, WORKER_PREFIX

#: The content type of `GET /metrics`.
METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST

#: Events or streams per batch or call (up to the module's 1,000-event batch bound).
_COUNT_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def stream_family(stream_id: str) -> str:
    """`run`, `worker` or `fleet`: a bounded label for counters (stream ids themselves are unbounded)."""
    for prefix, family in ((RUN_PREFIX, "run"), (WORKER_PREFIX, "worker"), (FLEET_PREFIX, "fleet")):
        if stream_id.startswith(prefix):
            return family
    return "other"


class RuntimeMetrics:
    """Appended, published, duplicates, failures by class, outbox depth/age per stream, latency, dead letters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.appended = Counter(
            "autopilot_sync_runtime_events_appended",
            "Events durably stored in the outbox and acknowledged to a producer, by stream family.",
            ["family"],
            registry=self.registry,
        )
        self.published = Counter(
            "autopilot_sync_runtime_events_published",
            "Events the host confirmed committed (including duplicates it already held), by stream family.",
            ["family"],
            registry=self.registry,
        )
        self.dependency_up = Gauge(
            "autopilot_sync_runtime_dependency_up",
            "1 while a dependency (control, host) passed its last check, 0 while the runtime runs degraded.",
            ["dependency"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "autopilot_sync_runtime_duplicates_suppressed",
            "Events found already committed on the host (a retry after a lost answer, or a reconcile).",
            registry=self.registry,
        )
        self.republished = Counter(
            "autopilot_sync_runtime_events_republished",
            "Events queued again from seq 1 because the host no longer held their stream (a new database incarnation).",
            registry=self.registry,
        )
        self.failures = Counter(
            "autopilot_sync_runtime_publish_failures",
            "Failed publish attempts, by retry class.",
            ["retry_class"],
            registry=self.registry,
        )
        self.dead_lettered = Counter(
            "autopilot_sync_runtime_dead_letters",
            "Events dead-lettered (their stream stops there until replayed), by retry class.",
            ["retry_class"],
            registry=self.registry,
        )
        self.dead_letters_open = Gauge(
            "autopilot_sync_runtime_dead_letters_open",
            "Dead letters not yet replayed (= streams blocked).",
            registry=self.registry,
        )
        self.outbox_depth = Gauge(
            "autopilot_sync_runtime_outbox_depth",
            "Unpublished events per stream (streams with a backlog only).",
            ["stream_id"],
            registry=self.registry,
        )
        self.outbox_oldest_age = Gauge(
            "autopilot_sync_runtime_outbox_oldest_age_seconds",
            "Age of the oldest unpublished event per stream (streams with a backlog only).",
            ["stream_id"],
            registry=self.registry,
        )
        self.outbox_depth_total = Gauge(
            "autopilot_sync_runtime_outbox_depth_total",
            "Unpublished events over all streams.",
            registry=self.registry,
        )
        self.publish_latency = Histogram(
            "autopilot_sync_runtime_publish_latency_seconds",
            "From the producer's acknowledged append to the host's acknowledged commit, per event.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "autopilot_sync_runtime_publish_batch_events",
            "Events per published stream batch (one stream's part of an append_sync_events call).",
            buckets=_COUNT_BUCKETS,
            registry=self.registry,
        )
        self.call_events = Histogram(
            "autopilot_sync_runtime_publish_call_events",
            "Events per append_sync_events call sent (concurrent streams' batches coalesced into one call).",
            buckets=_COUNT_BUCKETS,
            registry=self.registry,
        )
        self.call_streams = Histogram(
            "autopilot_sync_runtime_publish_call_streams",
            "Streams per append_sync_events call sent.",
            buckets=_COUNT_BUCKETS,
            registry=self.registry,
        )
        self.call_splits = Counter(
            "autopilot_sync_runtime_publish_call_splits",
            "Combined calls the host refused, whose streams' parts were then sent one by one (each its own answer).",
            registry=self.registry,
        )
        self.host_behind_gauge = Gauge(
            "autopilot_sync_runtime_host_behind",
            "1 while the host answers the runtime's appends late (over 50 ms): calls then wait to be joined.",
            registry=self.registry,
        )
        for retry_class in RetryClass:  # every class visible at 0, so alerts can use rate() from the start
            self.failures.labels(retry_class=retry_class.value)
            self.dead_lettered.labels(retry_class=retry_class.value)
        for family in ("run", "worker", "fleet"):
            self.appended.labels(family=family)
            self.published.labels(family=family)

    def call_sent(self, events: int, streams: int) -> None:
        """One append call went out (the coalescer's `CallObserver`)."""
        self.call_events.observe(events)
        self.call_streams.observe(streams)

    def call_split(self) -> None:
        """A combined call was refused and split by stream (the coalescer's `CallObserver`)."""
        self.call_splits.inc()

    def host_behind(self, behind: bool) -> None:
        """The coalescer judges the host behind, or no longer (its `CallObserver`)."""
        self.host_behind_gauge.set(1 if behind else 0)

    def observe_backlog(self, backlog: Iterable[StreamBacklog], now_us: int) -> None:
        """Reset the per-stream gauges to what the outbox holds now."""
        self.outbox_depth.clear()
        self.outbox_oldest_age.clear()
        total = 0
        blocked = 0
        for stream in backlog:
            blocked += stream.blocked
            if stream.pending == 0 and not stream.blocked:
                continue
            total += stream.pending
            self.outbox_depth.labels(stream_id=stream.stream_id).set(stream.pending)
            age = 0.0 if stream.oldest_appended_us is None else max(0, now_us - stream.oldest_appended_us) / 1e6
            self.outbox_oldest_age.labels(stream_id=stream.stream_id).set(age)
        self.outbox_depth_total.set(total)
        self.dead_letters_open.set(blocked)

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return bytes(generate_latest(self.registry))
