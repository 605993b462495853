"""The runtime process: opens the outbox, serves the producer API, and runs the publisher until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from autopilot_sync.backoff import Backoff
from autopilot_sync.http_limits import HttpLimits, install_http_limits, runner_for
from autopilot_sync.lifecycle import announce_ready, until_stop_signal
from autopilot_sync.runtime.access import ProducerAccess
from autopilot_sync.runtime.api import build_app
from autopilot_sync.runtime.coalesce import CoalesceLimits
from autopilot_sync.runtime.health import DependencyMonitor, RuntimeHealth, StartupError
from autopilot_sync.runtime.hostlink import SdkHostLink
from autopilot_sync.runtime.metrics import RuntimeMetrics
from autopilot_sync.runtime.publisher import PUBLISH_BACKOFF, Publisher, PublisherConfig
from autopilot_sync.runtime.store import RuntimeStore
from autopilot_sync.runtime.tokens import TokenSource, load_or_create_key
from autopilot_sync.settings.load import EXIT_CONFIG
from autopilot_sync.settings.runtime import RuntimeSettings

log = logging.getLogger(__name__)


@dataclass
class RunningRuntime:
    """A started runtime: the API runner, the publisher task and what they share."""

    store: RuntimeStore
    link: SdkHostLink
    publisher: Publisher
    publisher_task: asyncio.Task[None]
    runner: web.AppRunner
    access: ProducerAccess
    monitor: DependencyMonitor
    monitor_task: asyncio.Task[None]
    host: str
    port: int
    pubkey_hex: str

    @property
    def base_url(self) -> str:
        """`http://host:port` of the API."""
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        """Stop accepting appends, stop publishing, then close the outbox (everything acknowledged is on disk)."""
        await self.runner.cleanup()
        await self.access.close()
        for task in (self.publisher_task, self.monitor_task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.monitor.close()
        await self.link.close()
        await self.store.close()


async def start_runtime(settings: RuntimeSettings) -> RunningRuntime:
    """Open the outbox, start the publisher and listen (port 0 picks a free port)."""
    key = load_or_create_key(settings.nostr_key_path)
    store = RuntimeStore(settings.data_dir, settings.max_payload_bytes)
    metrics = RuntimeMetrics()
    tokens = TokenSource(settings.control_url, key, settings.token_ttl_seconds)
    link = SdkHostLink(settings.spacetime_base_url, settings.database, tokens, readers=settings.readers)
    config = PublisherConfig(
        batch_size=settings.publish_batch_size,
        backoff=Backoff(PUBLISH_BACKOFF.base, float(settings.retry_cap_seconds)),
        coalesce=CoalesceLimits(max_events=max(settings.publish_call_max_events, settings.publish_batch_size)),
    )
    publisher = Publisher(store, link, metrics, config)
    health = RuntimeHealth(metrics)
    monitor = DependencyMonitor(
        health, tokens, settings.spacetime_base_url, settings.database, float(settings.health_check_seconds)
    )
    try:
        await monitor.start()  # StartupError (exit 2) on misconfiguration, before anything listens
    except BaseException:
        await link.close()
        await store.close()
        raise
    access = ProducerAccess(settings.control_url, settings.database)
    app = build_app(store, metrics, access, health)
    install_http_limits(app, HttpLimits())
    runner = await runner_for(app, access_log=None, shutdown_timeout=2)
    site = web.TCPSite(runner, settings.listen.host, settings.listen.port)
    await site.start()
    host, port = runner.addresses[0][0], runner.addresses[0][1]
    if settings.producer_socket is not None:
        try:
            await start_producer_socket(runner, settings.producer_socket)
        except OSError as exc:
            await runner.cleanup()
            await access.close()
            await monitor.close()
            await link.close()
            await store.close()
            raise StartupError(f"cannot serve the producer socket {settings.producer_socket}: {exc.strerror}") from None
    task = asyncio.create_task(publisher.run(), name="runtime-publisher")
    monitor_task = asyncio.create_task(monitor.run(), name="runtime-dependency-monitor")
    return RunningRuntime(
        store, link, publisher, task, runner, access, monitor, monitor_task, host, port, key.public_key().hex
    )


async def start_producer_socket(runner: web.AppRunner, path: Path) -> None:
    """Serve the API on a Unix socket only the runtime's user can connect to (mode 0600 from its first moment).

    The umask is narrowed while the socket is bound, so there is no window in which it exists with wider rights.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = os.umask(0o177)
    try:
        await web.UnixSite(runner, str(path)).start()
    finally:
        os.umask(previous)
    os.chmod(path, 0o600)


async def serve_forever(settings: RuntimeSettings) -> None:
    """Run until SIGINT/SIGTERM, printing the one `ready` line that scripts and tests wait for.

    A misconfiguration found at start (control refuses the key, no such database, an unusable socket path) prints
    one line and exits 2, like a bad setting.
    """
    try:
        running = await start_runtime(settings)
    except StartupError as exc:
        print(f"autopilot-sync runtime: cannot start: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_CONFIG) from None
    announce_ready(
        "runtime",
        running.base_url,
        pubkey=running.pubkey_hex,
        host=settings.spacetime_base_url,
        control=settings.control_url,
    )
    await until_stop_signal()
    log.info("stopping runtime")
    await running.stop()
