"""Prometheus metrics of the host, served at `GET /metrics`.

Counters are fed by the engine's commit listener, the commit log's flush hook and the WebSocket hub's connection
events (opened, closed and refused by reason: the rates that show a reconnect storm); gauges that describe the live
state (connections, distinct identities, query sets) are computed at scrape time from the WebSocket hub, so they can
never drift from the truth. Each host owns its registry, so several hosts in one test process do not collide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from aiohttp import web
from prometheus_client.metrics import Counter, Gauge, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from autopilot_sync.host.call_outcome import CallOutcome
from autopilot_sync.host.engine import HostEngine
from autopilot_sync.host.transaction import CommittedTx
from autopilot_sync.host.websocket import ConnectionEvent

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class CommitCounts(Collector):
    """Commits, rows written and reducer calls, counted in plain ints and exported as counters at scrape time.

    Why not `prometheus_client.Counter`s: every `inc` takes a lock, and a one-event append made seven of them with
    their label lookups (~16 µs of the host's CPU per call, docs/performance.md "Round 5 — percall"). The commit
    listener, the call counter and the scrape all run on the host's event loop, so plain ints need no lock.
    """

    def __init__(self) -> None:
        self.commits = 0
        #: (table, op) -> rows inserted or deleted
        self.rows: dict[tuple[str, str], int] = {}
        #: (reducer, status) -> calls
        self.calls: dict[tuple[str, str], int] = {}

    def collect(self) -> Iterator[Metric]:
        """The three counter families, as `Counter`s with these names and labels exported them."""
        commits = CounterMetricFamily("autopilot_sync_host_commits", "Committed (durable) transactions.")
        commits.add_metric([], self.commits)
        yield commits
        rows = CounterMetricFamily(
            "autopilot_sync_host_rows_written", "Rows inserted or deleted by commits.", labels=["table", "op"]
        )
        for (table, op), count in list(self.rows.items()):
            rows.add_metric([table, op], count)
        yield rows
        calls = CounterMetricFamily(
            "autopilot_sync_host_reducer_calls", "Reducer calls by outcome.", labels=["reducer", "status"]
        )
        for (reducer, status), count in list(self.calls.items()):
            calls.add_metric([reducer, status], count)
        yield calls


class HostMetrics:
    """Every metric the host exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        #: commits, rows written and reducer calls: fed once per commit and per call, so counted without locks
        self.counts = CommitCounts()
        r.register(self.counts)
        self.fsync_seconds = Histogram(
            "autopilot_sync_host_commitlog_fsync_seconds",
            "Duration of one group-commit fsync of the commit log.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.fanout_seconds = Histogram(
            "autopilot_sync_host_fanout_seconds",
            "From a transaction's commit timestamp to its update being queued for a subscriber.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.slow_consumers = Counter(
            "autopilot_sync_host_slow_consumer_disconnects_total",
            "Connections closed because their send queue exceeded its bound.",
            registry=r,
        )
        self.connections_opened = Counter(
            "autopilot_sync_host_connections_opened_total",
            "WebSocket connections accepted (upgraded); its rate against the open count shows a reconnect storm.",
            registry=r,
        )
        self.connections_closed = Counter(
            "autopilot_sync_host_connections_closed_total",
            "WebSocket connections ended, by reason: client (closed or vanished) or the host's close reason.",
            ["reason"],
            registry=r,
        )
        self.durable_offset = Gauge(
            "autopilot_sync_host_durable_offset", "Offset of the newest durable transaction.", registry=r
        )
        self.recovery_seconds = Gauge(
            "autopilot_sync_host_recovery_seconds", "Time the last start spent on snapshot load and replay.", registry=r
        )
        self.connections_refused = Counter(
            "autopilot_sync_host_connections_refused_total",
            "Connections refused, by cause: before the upgrade by HTTP status (unauthorized, forbidden, bad_request,"
            " not_found, too_many_connections, unavailable), after it (client_connected, storage_failed).",
            ["cause"],
            registry=r,
        )
        self.storage_failed = Gauge(
            "autopilot_sync_host_storage_failed", "1 when the commit log failed and writes are refused.", registry=r
        )
        self.quarantined_bytes = Counter(
            "autopilot_sync_host_commitlog_quarantined_bytes",
            "Commit-log bytes this process's start set aside as a damaged tail (history the host no longer serves).",
            registry=r,
        )
        self.quarantine_folders = Gauge(
            "autopilot_sync_host_commitlog_quarantine_folders",
            "quarantine-* folders in the commit-log directory: set-aside history waiting for an operator.",
            registry=r,
        )

    def observe_commit(self, tx: CommittedTx) -> None:
        """Commit listener: count the transaction and its rows."""
        counts = self.counts
        counts.commits += 1
        rows = counts.rows
        for change in tx.changes:
            if change.inserts:
                key = (change.table, "insert")
                rows[key] = rows.get(key, 0) + len(change.inserts)
            if change.deletes:
                key = (change.table, "delete")
                rows[key] = rows.get(key, 0) + len(change.deletes)

    def observe_connection(self, event: ConnectionEvent, reason: str) -> None:
        """WebSocket hub listener: count connections opened, closed and refused (by reason)."""
        if event is ConnectionEvent.OPENED:
            self.connections_opened.inc()
        elif event is ConnectionEvent.CLOSED:
            self.connections_closed.labels(reason).inc()
            if reason == "send_queue_full":
                self.slow_consumers.inc()
        else:
            self.connections_refused.labels(reason).inc()

    def observe_call(self, reducer: str, outcome: CallOutcome) -> None:
        """Count one client reducer call by its outcome."""
        calls = self.counts.calls
        key = (reducer, outcome.status.value)
        calls[key] = calls.get(key, 0) + 1

    def track_live(
        self, connections: Callable[[], float], identities: Callable[[], float], query_sets: Callable[[], float]
    ) -> None:
        """Gauges computed at scrape time from the live WebSocket state."""
        r = self.registry
        Gauge("autopilot_sync_host_connections", "Open WebSocket connections.", registry=r).set_function(connections)
        Gauge(
            "autopilot_sync_host_connected_identities", "Distinct identities with an open connection.", registry=r
        ).set_function(identities)
        Gauge("autopilot_sync_host_query_sets", "Subscribed query sets over all connections.", registry=r).set_function(
            query_sets
        )

    def attach(self, engine: HostEngine) -> None:
        """Feed counters from the engine and its commit log."""
        engine.add_commit_listener(self.observe_commit)
        engine.commitlog.on_fsync = self.fsync_seconds.observe
        self.recovery_seconds.set(engine.recovery.seconds)
        self.durable_offset.set_function(lambda: float(engine.durable_offset))  # read at scrape time
        self.storage_failed.set_function(lambda: 1.0 if engine.commitlog.failure is not None else 0.0)
        if engine.recovery.tail is not None:
            self.quarantined_bytes.inc(engine.recovery.tail.discarded_bytes)
        self.quarantine_folders.set_function(lambda: float(len(engine.commitlog.quarantine_folders())))


METRICS_KEY = web.AppKey("autopilot_sync.host.metrics", HostMetrics)


async def metrics_handler(request: web.Request) -> web.Response:
    """`GET /metrics` in the Prometheus text format (its encoder imported with the first scrape, or by the warm-up
    after `ready`: `host/start.py` imports prometheus_client's metric classes without it)."""
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

    metrics = request.app[METRICS_KEY]
    body = generate_latest(metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_metrics_route(app: web.Application, metrics: HostMetrics) -> None:
    """Mount `GET /metrics`."""
    app[METRICS_KEY] = metrics
    app.router.add_get("/metrics", metrics_handler)
