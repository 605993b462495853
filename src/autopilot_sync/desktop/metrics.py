"""The desktop's own Prometheus numbers, and the optional loopback `GET /metrics` that serves them.

`DesktopMetrics` is a `StateHub` listener: every number comes from the `DesktopState` values the sync layer
publishes (the same ones the UI and the headless JSON show), in this one place. Gauges are set from each state;
counters follow the state's since-start counts (`rebuilds`, `divergences`, `gaps`, `duplicates`, `acks_sent`,
`token_fetches`) by their increase, and reconnects are counted from the connection going live again after it was
lost. The registry is the desktop's own, so a test process can hold several.

`serve_metrics` mounts it at `http://<AUTOPILOT_SYNC_DESKTOP_METRICS_LISTEN>/metrics` while the desktop runs (UI or
`--headless`); with the setting empty (the default) nothing listens.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from autopilot_sync.desktop.state import ConnectionPhase, DesktopState, StateHub, StreamView
from autopilot_sync.settings.fields import ListenAddress

log = logging.getLogger(__name__)

#: The content type of `GET /metrics`.
METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST

_STREAM_COUNTS: tuple[tuple[str, str, str], ...] = (
    # (StreamView field, metric name without _total, help)
    ("rebuilds", "autopilot_sync_desktop_stream_rebuilds", "Rebuilds of the local copy (any cause)."),
    (
        "divergences",
        "autopilot_sync_desktop_stream_divergences",
        "Rebuilds because the host's history is not the one applied here (epoch change, checkpoint ahead, chain).",
    ),
    ("gaps", "autopilot_sync_desktop_stream_gaps", "Gaps seen (a hole left after a batch; resubscribed)."),
    ("duplicates", "autopilot_sync_desktop_stream_duplicates_dropped", "Events dropped as already applied."),
    ("acks_sent", "autopilot_sync_desktop_checkpoint_acks", "ack_checkpoint calls the host accepted."),
)


class DesktopMetrics:
    """Connection phase, reconnects, token fetches, presence, and per stream: seqs, lag, replay, counts."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.connection_phase = Gauge(
            "autopilot_sync_desktop_connection_phase",
            "1 for the connection's current phase (connecting, live, backing_off, offline), 0 for the others.",
            ["phase"],
            registry=self.registry,
        )
        self.reconnects = Counter(
            "autopilot_sync_desktop_reconnects",
            "Times the connection went live again after it was lost.",
            registry=self.registry,
        )
        self.token_fetches = Counter(
            "autopilot_sync_desktop_token_fetches",
            "Session tokens fetched from control (the first one and every refresh).",
            registry=self.registry,
        )
        self.presence_users = Gauge(
            "autopilot_sync_desktop_presence_users",
            "Distinct connected identities the desktop sees in active_connection.",
            registry=self.registry,
        )
        self.presence_connections = Gauge(
            "autopilot_sync_desktop_presence_connections",
            "Connections (active_connection rows) the desktop sees.",
            registry=self.registry,
        )
        self.head_seq = Gauge(
            "autopilot_sync_desktop_stream_head_seq",
            "Newest seq of a followed stream, as the host's stream_head says.",
            ["stream_id"],
            registry=self.registry,
        )
        self.applied_seq = Gauge(
            "autopilot_sync_desktop_stream_applied_seq",
            "Checkpoint of a followed stream: every seq up to it is applied locally.",
            ["stream_id"],
            registry=self.registry,
        )
        self.acked_seq = Gauge(
            "autopilot_sync_desktop_stream_acked_seq",
            "Newest checkpoint of a followed stream reported to the host (ack_checkpoint).",
            ["stream_id"],
            registry=self.registry,
        )
        self.lag = Gauge(
            "autopilot_sync_desktop_stream_lag",
            "Events committed on the host and not yet applied here (head - applied).",
            ["stream_id"],
            registry=self.registry,
        )
        self.replay_progress = Gauge(
            "autopilot_sync_desktop_stream_replay_progress",
            "Share of the current replay or rebuild done, 0 to 1 (1 when caught up).",
            ["stream_id"],
            registry=self.registry,
        )
        self._counts = {
            attr: Counter(name, text, ["stream_id"], registry=self.registry) for attr, name, text in _STREAM_COUNTS
        }
        for phase in ConnectionPhase:
            self.connection_phase.labels(phase.value).set(0)
        self._seen: dict[tuple[str, str], int] = {}
        self._token_fetches = 0
        self._phase: ConnectionPhase | None = None
        self._was_live = False

    def observe(self, state: DesktopState) -> None:
        """Bring every number up to `state` (a `StateHub` listener)."""
        connection = state.connection
        if connection.phase is not self._phase:
            if self._phase is not None:
                self.connection_phase.labels(self._phase.value).set(0)
            self.connection_phase.labels(connection.phase.value).set(1)
            if connection.phase is ConnectionPhase.LIVE:
                if self._was_live:
                    self.reconnects.inc()
                self._was_live = True
            self._phase = connection.phase
        if connection.token_fetches > self._token_fetches:
            self.token_fetches.inc(connection.token_fetches - self._token_fetches)
            self._token_fetches = connection.token_fetches
        self.presence_users.set(state.presence.users)
        self.presence_connections.set(state.presence.connections)
        for stream in state.streams:
            self._observe_stream(stream)

    def _observe_stream(self, stream: StreamView) -> None:
        sid = stream.stream_id
        self.head_seq.labels(sid).set(stream.head_seq)
        self.applied_seq.labels(sid).set(stream.applied_seq)
        self.acked_seq.labels(sid).set(stream.acked_seq)
        self.lag.labels(sid).set(stream.lag)
        self.replay_progress.labels(sid).set(stream.replay_progress)
        for attr, counter in self._counts.items():
            value = int(getattr(stream, attr))
            before = self._seen.get((attr, sid))
            if before is None:
                counter.labels(sid)  # the series exists (at 0) from the first sight of the stream
                before = 0
            if value > before:
                counter.labels(sid).inc(value - before)
            self._seen[(attr, sid)] = max(value, before)

    def attach(self, hub: StateHub) -> Callable[[], None]:
        """Observe the hub's current state now and every change from here on; returns a function that stops it."""
        self.observe(hub.state)
        return hub.listen(self.observe)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return bytes(generate_latest(self.registry))


_METRICS_KEY = web.AppKey("autopilot_sync.desktop.metrics", DesktopMetrics)


async def _metrics_handler(request: web.Request) -> web.Response:
    return web.Response(body=request.app[_METRICS_KEY].exposition(), headers={"Content-Type": METRICS_CONTENT_TYPE})


def build_app(metrics: DesktopMetrics) -> web.Application:
    """The endpoint's aiohttp app: `GET /metrics` only."""
    app = web.Application()
    app[_METRICS_KEY] = metrics
    app.router.add_get("/metrics", _metrics_handler)
    return app


@contextlib.asynccontextmanager
async def serve_metrics(hub: StateHub, listen: ListenAddress | None) -> AsyncIterator[DesktopMetrics | None]:
    """Serve `hub`'s numbers on `listen` for the duration of the block; nothing (and None) when `listen` is None."""
    if listen is None:
        yield None
        return
    metrics = DesktopMetrics()
    detach = metrics.attach(hub)
    runner = web.AppRunner(build_app(metrics), access_log=None, shutdown_timeout=1)
    await runner.setup()
    try:
        site = web.TCPSite(runner, listen.host, listen.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in str(host) else host
        log.info("desktop metrics at http://%s:%d/metrics", shown, port)
        yield metrics
    finally:
        detach()
        await runner.cleanup()
