"""The exporter process: subscribe to the sync tables as a read-only observer, serve gauges computed at scrape time.

Misconfiguration that no waiting fixes stops the start with one line and exit status 2 — control refuses the key,
the host serves no such database or a database without the sync tables, or the exporter's identity is not one of
the host's observers (`AUTOPILOT_SYNC_HOST_OBSERVER_IDENTITIES`; row-level security would hide other readers'
checkpoints and every stream it is not a reader of, so the numbers would be silently wrong). An observer reads what
the owner reads but may call no owner reducer, so a leaked exporter key changes nothing. An unreachable host or
control is transient: the exporter starts degraded, says so on `GET /healthz` and in
`autopilot_sync_exporter_host_live`, exports no stream series (absent, never stale), and the SDK reconnects and
resubscribes with a fresh token by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from autopilot_sync.client.errors import ClientError, OneOffQueryError
from autopilot_sync.client.query_set import QuerySet, QuerySetState
from autopilot_sync.client.reconnect import SyncClient, TokenGrant
from autopilot_sync.control.client import TokenFetchError, fetch_session_token
from autopilot_sync.exporter.lags import StreamHead, stream_families, stream_lags
from autopilot_sync.http_limits import HttpLimits, install_http_limits, runner_for
from autopilot_sync.lifecycle import announce_ready, until_stop_signal
from autopilot_sync.nostr.keyfile import load_or_create_secret_key
from autopilot_sync.nostr.keys import SecretKey
from autopilot_sync.settings.exporter import ExporterSettings
from autopilot_sync.settings.load import EXIT_CONFIG

log = logging.getLogger(__name__)

#: The sync module's tables the gauges are computed from.
SYNC_TABLES = ("stream_head", "stream_checkpoint", "active_connection")
#: One query set with the three tables; an observer's rows are not filtered by row-level security.
QUERIES = tuple(f"SELECT * FROM {table}" for table in SYNC_TABLES)
#: A private table of the sync module only the owner and the observers see a row of (module/config.py): the check.
READ_ALL_PROBE = "SELECT * FROM sync_config"
#: What the exporter asks control for: a connection the sync module admits (it reads; it never writes).
EXPORTER_SCOPES = ("sync.subscribe",)
CLIENT_KIND = "exporter"
_PROBE_TIMEOUT = aiohttp.ClientTimeout(total=5)


class StartupError(Exception):
    """A misconfiguration: the process prints this one line and exits 2."""


class ExporterTokens:
    """Session tokens from control for the exporter's key: the SDK's token provider (fetched on demand)."""

    def __init__(self, control_url: str, key: SecretKey) -> None:
        self.control_url = control_url
        self.key = key
        self.identity: str | None = None

    async def grant(self) -> TokenGrant:
        """A fresh token (the SDK asks at the refresh time control gave, and after a 401)."""
        token = await fetch_session_token(self.control_url, self.key, EXPORTER_SCOPES, None, None, CLIENT_KIND)
        self.identity = token.identity
        return TokenGrant(token.token, token.expires_at, token.refresh_at)


class SyncTablesCollector(Collector):
    """Gauges over the rows the subscription holds; per-stream series only while the subscription is live."""

    def __init__(self, client: SyncClient, query_set: QuerySet | None = None) -> None:
        self.client = client
        self.query_set = query_set

    def live(self) -> bool:
        """Whether the cache holds the tables as the host has them now (connected, the query set applied)."""
        qs = self.query_set
        return self.client.connection is not None and qs is not None and qs.state is QuerySetState.APPLIED

    def describe(self) -> Iterable[Metric]:
        """The families without samples, so registration checks names without reading the cache."""
        return self.families()

    @staticmethod
    def families() -> list[Metric]:
        """Every family the exporter can export, without stream samples (for checks against the docs)."""
        return [_live_family(False), *stream_families([], 0)]

    def collect(self) -> Iterable[Metric]:
        """Heads, checkpoints and connections from the cache, as `stream_lags` computes them."""
        live = self.live()
        yield _live_family(live)
        if not live:
            return
        cache = self.client.cache
        heads = [_head(row) for row in cache.rows("stream_head")]
        connected = {row.identity for row in cache.rows("active_connection")}
        checkpoints = [(row.identity, str(row.stream_id), int(row.seq)) for row in cache.rows("stream_checkpoint")]
        yield from stream_families(stream_lags(heads, checkpoints, connected), len(heads))


def _head(row: Any) -> StreamHead:
    return StreamHead(str(row.stream_id), int(row.head_seq), int(row.retained_from_seq))


def _live_family(live: bool) -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "autopilot_sync_exporter_host_live",
        "1 while the exporter's subscription to the sync tables is live (stream series are exported only then).",
        value=1 if live else 0,
    )


async def check_database(base_url: str, database: str) -> str | None:
    """None when the host serves `database` with the sync tables; the misconfiguration otherwise.

    Raises `aiohttp.ClientError`/`TimeoutError` when the host does not answer (transient: start degraded).
    """
    url = f"{base_url}/v1/database/{quote(database, safe='')}/schema?version=9"
    async with aiohttp.ClientSession(timeout=_PROBE_TIMEOUT) as http, http.get(url) as response:
        if response.status in (400, 404):
            return f"{base_url} serves no database {database!r} (HTTP {response.status})"
        if response.status != 200:
            raise aiohttp.ClientError(f"{base_url} answered HTTP {response.status}")
        schema = await response.json()
    tables = {str(table.get("name")) for table in schema.get("tables", [])}
    missing = [table for table in SYNC_TABLES if table not in tables]
    if missing:
        return f"database {database!r} has no table {', '.join(missing)}: it does not run the sync module"
    return None


@dataclass
class RunningExporter:
    """A started exporter: its SDK client, collector, HTTP runner and bound address."""

    client: SyncClient
    collector: SyncTablesCollector
    tokens: ExporterTokens
    runner: web.AppRunner
    host: str
    port: int
    fatal: asyncio.Future[str] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    _watch: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        """`http://host:port` of `/metrics` and `/healthz`."""
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        """Stop serving, then close the subscription."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await self.runner.cleanup()
        await self.client.close()


def build_app(collector: SyncTablesCollector) -> web.Application:
    """`/metrics` (the gauges) and `/healthz` (200; `status` says `degraded` while the subscription is not live)."""
    registry = CollectorRegistry()
    registry.register(collector)

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        live = collector.live()
        reason = "subscribed to the sync tables" if live else "not subscribed: host or control unreachable"
        return web.json_response({"status": "ok" if live else "degraded", "host": reason})

    app = web.Application()
    install_http_limits(app, HttpLimits())
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


async def _check_reads_everything(client: SyncClient, tokens: ExporterTokens) -> str | None:
    """None when this identity sees the private `sync_config` row (an observer does); the misconfiguration otherwise."""
    try:
        rows = (await client.one_off_query(READ_ALL_PROBE)).rows("sync_config")
    except OneOffQueryError:
        rows = ()  # a private table is refused to anyone but the owner and the observers
    except ClientError:
        return None  # the connection went away: checked again on the next one
    if rows:
        return None
    identity = tokens.identity or "?"
    return (
        f"the exporter's identity {identity} is not an observer of the database, so row-level security hides other "
        f"readers' checkpoints: add it to AUTOPILOT_SYNC_HOST_OBSERVER_IDENTITIES={identity} on the host "
        "(docs/security.md)"
    )


def _settle(future: asyncio.Future[str], value: str) -> None:
    if not future.done():
        future.set_result(value)


async def _watch_reads_everything(running: RunningExporter) -> None:
    """On every (re)connection, check the identity still reads every row; a failure is fatal (exit 2)."""
    while True:
        try:
            connection = await running.client.wait_connected()
        except ClientError as exc:
            _settle(running.fatal, f"the subscription ended for good: {exc}")
            return
        problem = await _check_reads_everything(running.client, running.tokens)
        if problem is not None:
            _settle(running.fatal, problem)
            return
        await connection.wait_closed()


async def start_exporter(settings: ExporterSettings) -> RunningExporter:
    """Check the configuration, subscribe, and listen (port 0 picks a free port)."""
    key = load_or_create_secret_key(settings.nostr_key_path).secret
    tokens = ExporterTokens(settings.control_url, key)
    try:
        await tokens.grant()
    except TokenFetchError as exc:
        if not exc.retryable:
            raise StartupError(f"control at {settings.control_url} refuses the exporter's key: {exc}") from None
        log.warning("control unreachable at start (%s): starting degraded", exc)
    try:
        problem = await check_database(settings.spacetime_base_url, settings.database)
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("host unreachable at start (%s): starting degraded", exc)
        problem = None
    if problem is not None:
        raise StartupError(problem)
    client = SyncClient(settings.spacetime_base_url, settings.database, token_provider=tokens.grant)
    collector = SyncTablesCollector(client)
    await client.start()
    collector.query_set = await client.subscribe(QUERIES)
    try:
        runner = await runner_for(build_app(collector), access_log=None, shutdown_timeout=2)
        site = web.TCPSite(runner, settings.listen.host, settings.listen.port)
        await site.start()
    except BaseException:
        await client.close()
        raise
    host, port = runner.addresses[0][0], runner.addresses[0][1]
    running = RunningExporter(client, collector, tokens, runner, host, port)
    running._watch = asyncio.create_task(_watch_reads_everything(running), name="exporter-observer-check")
    return running


async def serve_forever(settings: ExporterSettings) -> None:
    """Run until SIGINT/SIGTERM (or a fatal misconfiguration: exit 2), printing the one `ready` line."""
    try:
        running = await start_exporter(settings)
    except StartupError as exc:
        print(f"autopilot-sync exporter: cannot start: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_CONFIG) from None
    announce_ready("exporter", running.base_url, host=settings.spacetime_base_url, identity=running.tokens.identity)
    stop = asyncio.ensure_future(until_stop_signal())
    stop.add_done_callback(lambda _: _settle(running.fatal, ""))  # empty: stopped by a signal
    await running.fatal
    stop.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await stop
    await running.stop()
    if running.fatal.result():
        print(f"autopilot-sync exporter: {running.fatal.result()}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_CONFIG)
