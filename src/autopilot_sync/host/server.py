"""The host process: loads the module, recovers the database, serves HTTP and WebSocket until told to stop."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from autopilot_sync.bindings.module import Module
from autopilot_sync.host.auth.tokens import TokenService
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.host.hosted_module import HostedModule, is_js_module_path
from autopilot_sync.host.http_api import add_http_routes
from autopilot_sync.host.metrics import HostMetrics, add_metrics_route
from autopilot_sync.host.publish import (
    MODULES_DIR,
    ModulePublisher,
    ModuleSource,
    SourceKind,
    empty_module,
    published_source,
)
from autopilot_sync.host.publish_routes import add_publish_routes
from autopilot_sync.host.recovery import read_meta
from autopilot_sync.host.sql import VisibilityFilterError
from autopilot_sync.host.warm import warm_in_background
from autopilot_sync.http_limits import HttpLimits, install_http_limits, runner_for
from autopilot_sync.lifecycle import announce_ready, until_stop_signal
from autopilot_sync.settings.host import HostSettings
from autopilot_sync.spacetime.values import Identity

log = logging.getLogger(__name__)


class ModuleLoadError(RuntimeError):
    """The configured module cannot be loaded: no importable `module` attribute, a JS module that fails to load, or a
    module the engine refuses (a visibility filter that does not compile)."""


def source_loader(settings: HostSettings) -> Callable[[ModuleSource, Path], HostedModule | Module]:
    """How a publish's module source becomes a runnable module on this host (its JS runner limits included)."""

    def load(source: ModuleSource, bundle: Path) -> HostedModule | Module:
        if source.kind is SourceKind.PYTHON:
            return load_module(source.value)
        return load_js(bundle, settings)

    return load


def load_js(path: Path, settings: HostSettings) -> HostedModule:
    """A built TypeScript module run in a Node child with the host's runner limits (ModuleLoadError if it fails).

    The JS layer is imported here, not with the server: a host serving a Python module never loads it.
    """
    from autopilot_sync.host.js_module import JsModule
    from autopilot_sync.jsmodule import JsModuleLoadError
    from autopilot_sync.jsmodule.runner import RunnerLimits

    if not path.is_file():
        raise ModuleLoadError(f"module file {str(path)!r} does not exist")
    limits = RunnerLimits(heap_mb=settings.js_heap_mb, call_timeout_s=settings.js_call_timeout_ms / 1000)
    try:
        return JsModule(path, limits=limits)
    except JsModuleLoadError as exc:
        raise ModuleLoadError(str(exc)) from exc


def initial_module(settings: HostSettings) -> tuple[HostedModule | Module, bool]:
    """What the host runs at start, and whether it serves a database.

    A module published over HTTP (or a deletion) is recorded in the data directory and wins over `--module`: the
    host restarts into what was last published. Otherwise `--module` (empty: no database, waiting for a publish).
    """
    data_dir = Path(settings.data_dir)
    was_published, source = published_source(data_dir)
    if was_published:
        if source is None:
            return empty_module(), False
        if settings.module and (source.kind is not SourceKind.PYTHON or source.value != settings.module):
            log.warning("running the published module %s, not --module %s", source.describe(), settings.module)
        return source_loader(settings)(source, data_dir / MODULES_DIR / f"{source.value}.js"), True
    if not settings.module:
        return empty_module(), False
    return load_hosted(settings), True


def load_module(path: str) -> Module:
    """Import `path` and return its `module` (a `Module`)."""
    try:
        imported = importlib.import_module(path)
    except ImportError as exc:
        raise ModuleLoadError(f"cannot import module {path!r}: {exc}") from exc
    module = getattr(imported, "module", None)
    if not isinstance(module, Module):
        raise ModuleLoadError(f"{path!r} has no `module` attribute holding an autopilot_sync Module")
    return module


def load_hosted(settings: HostSettings) -> Module | HostedModule:
    """The configured module: a built TypeScript module (`.js`/`.mjs`, run in a Node child) or a Python path."""
    if not is_js_module_path(settings.module):
        return load_module(settings.module)
    return load_js(Path(settings.module).expanduser(), settings)


@dataclass
class RunningHost:
    """A started host: its engine, token service and the bound address."""

    engine: HostEngine
    tokens: TokenService
    runner: web.AppRunner
    host: str
    port: int

    @property
    def base_url(self) -> str:
        """`http://host:port` of the HTTP API."""
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        """Close sockets first (running disconnect hooks), then the engine's log."""
        await self.runner.cleanup()
        await self.tokens.close()
        await self.engine.stop()
        _close_module(self.engine.module)


def _close_module(module: HostedModule | Module) -> None:
    """Stop what the module runs outside this process (a TypeScript module's runner)."""
    from autopilot_sync.host.js_module import JsModule

    if isinstance(module, JsModule):
        module.close()


def build_app(
    engine: HostEngine, tokens: TokenService, settings: HostSettings, *, serving: bool = True
) -> web.Application:
    """The aiohttp application with every route of the host."""
    from autopilot_sync.host.subscriptions import SubscriptionLimits
    from autopilot_sync.host.websocket import WebSocketOptions, add_websocket_route

    app = web.Application(client_max_size=settings.max_message_bytes)
    install_http_limits(
        app,
        HttpLimits(
            header_timeout=float(settings.http_header_timeout_seconds),
            body_timeout=float(settings.http_body_timeout_seconds),
            max_pending_connections=settings.http_max_pending_connections,
        ),
    )
    add_http_routes(app, engine, tokens, max_body_bytes=settings.max_message_bytes)
    add_publish_routes(
        app, ModulePublisher(engine, source_loader(settings), published=serving), frozenset(settings.create_identities)
    )
    options = WebSocketOptions(
        ping_interval=float(settings.ping_interval_seconds),
        idle_timeout=float(settings.idle_timeout_seconds),
        max_message_bytes=settings.max_message_bytes,
        send_queue_max_messages=settings.send_queue_max_messages,
        send_queue_max_bytes=settings.send_queue_max_bytes,
        max_connections_per_identity=settings.max_connections_per_identity,
        subscription_limits=SubscriptionLimits(
            max_query_sets_per_connection=settings.max_query_sets_per_connection,
            max_queries_per_set=settings.max_queries_per_set,
            max_queries_per_connection=settings.max_queries_per_connection,
            max_unindexed_queries_per_connection=settings.max_unindexed_queries_per_connection,
        ),
    )
    hub = add_websocket_route(app, engine, tokens, options=options)
    metrics = HostMetrics()
    metrics.attach(engine)
    engine.on_call = metrics.observe_call
    hub.on_refused = lambda cause: metrics.connections_refused.labels(cause).inc()
    hub.on_connection_event = metrics.observe_connection
    metrics.track_live(
        lambda: len(hub.connections),
        lambda: len({connection.caller.identity for connection in hub.connections}),
        lambda: sum(hub.subscriptions.query_set_count(connection) for connection in hub.connections),
    )
    add_metrics_route(app, metrics)
    _keep_module_logs(app, engine, settings)
    return app


def _keep_module_logs(app: web.Application, engine: HostEngine, settings: HostSettings) -> None:
    """The module log of the database in `<data_dir>/logs` and its route; kept while the app runs."""
    from autopilot_sync.host import module_log
    from autopilot_sync.host.logs_route import add_logs_route

    log = module_log.ModuleLog(engine.data_dir / "logs", settings.module_log_max_bytes)
    handler = module_log.install(engine.database_name, log)
    add_logs_route(app, log)

    async def stop_keeping(_: web.Application) -> None:
        module_log.uninstall(handler)

    app.on_cleanup.append(stop_keeping)


async def start_host(settings: HostSettings) -> RunningHost:
    """Recover the database and start listening (port 0 picks a free port)."""
    module, serving = initial_module(settings)
    owner = str(read_meta(Path(settings.data_dir)).get("owner_identity") or settings.owner_identity)
    try:
        engine = HostEngine(
            module,
            Path(settings.data_dir),
            settings.database,
            EngineConfig(
                fsync=settings.fsync,
                inline_fsync_max_seconds=settings.inline_fsync_max_micros / 1e6,
                snapshot_every=settings.snapshot_every_commits,
                snapshot_every_bytes=settings.snapshot_every_bytes,
                snapshot_delta_every_bytes=settings.snapshot_delta_every_bytes,
                snapshot_deltas_max=settings.snapshot_deltas_max,
                snapshots_kept=settings.snapshots_kept,
                segment_max_bytes=settings.segment_max_bytes,
                owner_identity=Identity.from_hex(owner) if owner else Identity(0),
                observer_identities=frozenset(Identity.from_hex(hex_) for hex_ in settings.observer_identities),
                cache_dir=Path(settings.cache_dir),
            ),
        )
    except VisibilityFilterError as exc:
        _close_module(module)
        raise ModuleLoadError(f"module {settings.module!r} refused: {exc}") from exc
    async with AsyncExitStack() as undo:
        undo.callback(_close_module, engine.module)
        await engine.start()
        undo.push_async_callback(engine.stop)
        tokens = TokenService.for_host(settings)
        undo.push_async_callback(tokens.close)
        app = build_app(engine, tokens, settings, serving=serving)
        runner = await runner_for(app, access_log=None, shutdown_timeout=2)
        site = web.TCPSite(runner, settings.listen.host, settings.listen.port)
        await site.start()
        sockets = runner.addresses
        host, port = sockets[0][0], sockets[0][1]
        undo.pop_all()
    return RunningHost(engine, tokens, runner, host, port)


async def serve_forever(settings: HostSettings) -> None:
    """Run until SIGINT/SIGTERM, printing one `ready` line that scripts and tests wait for."""
    running = await start_host(settings)
    report = running.engine.recovery
    announce_ready(
        "host",
        running.base_url,
        database=settings.database,
        offset=report.offset,
        recovered_in=f"{report.seconds:.3f}s",
    )
    warm_in_background()
    if report.tail is not None:
        print(
            f"WARNING commit log tail set aside: {report.tail.reason} ({report.tail.discarded_bytes} bytes)", flush=True
        )
    await until_stop_signal()
    log.info("stopping host")
    await running.stop()
