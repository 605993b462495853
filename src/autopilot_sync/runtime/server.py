"""The runtime process: opens the outbox, serves the producer API, and runs the publisher until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from aiohttp import web

from autopilot_sync.lifecycle import announce_ready, until_stop_signal
from autopilot_sync.runtime.api import build_app
from autopilot_sync.runtime.hostlink import SdkHostLink
from autopilot_sync.runtime.metrics import RuntimeMetrics
from autopilot_sync.runtime.publisher import Publisher, PublisherConfig
from autopilot_sync.runtime.retry import Backoff
from autopilot_sync.runtime.store import RuntimeStore
from autopilot_sync.runtime.tokens import TokenSource, load_or_create_key
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
        self.publisher_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.publisher_task
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
        batch_size=settings.publish_batch_size, backoff=Backoff(cap_seconds=float(settings.retry_cap_seconds))
    )
    publisher = Publisher(store, link, metrics, config)
    runner = web.AppRunner(build_app(store, metrics), access_log=None, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, settings.listen.host, settings.listen.port)
    await site.start()
    host, port = runner.addresses[0][0], runner.addresses[0][1]
    task = asyncio.create_task(publisher.run(), name="runtime-publisher")
    return RunningRuntime(store, link, publisher, task, runner, host, port, key.public_key().hex)


async def serve_forever(settings: RuntimeSettings) -> None:
    """Run until SIGINT/SIGTERM, printing the one `ready` line that scripts and tests wait for."""
    running = await start_runtime(settings)
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
