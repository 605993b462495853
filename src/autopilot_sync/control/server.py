"""The control process: builds the service from its settings, listens, and runs until told to stop."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from autopilot_sync.control.admission import AdmissionLimits
from autopilot_sync.control.api import build_app
from autopilot_sync.control.keys import KeyPaths, KeyStore
from autopilot_sync.control.policy_file import PolicySource
from autopilot_sync.control.request import TtlBounds
from autopilot_sync.control.service import ControlConfig, ControlService
from autopilot_sync.control.tokens import TokenContext
from autopilot_sync.http_limits import HttpLimits, install_http_limits, runner_for
from autopilot_sync.lifecycle import announce_ready, until_stop_signal
from autopilot_sync.settings.control import ControlSettings

_log = logging.getLogger(__name__)


def service_from_settings(settings: ControlSettings) -> ControlService:
    """The service a control process runs: keys from `signing_key_path` (created on first start), policy and TTLs."""
    config = ControlConfig(
        public_url=settings.public_url,
        context=TokenContext(
            settings.public_url,
            settings.database,
            settings.spacetime_base_url,
            refresh_margin=settings.token_refresh_margin_seconds,
        ),
        ttl=TtlBounds(
            settings.token_ttl_min_seconds, settings.token_ttl_max_seconds, settings.token_ttl_default_seconds
        ),
        policy=PolicySource(settings.policy_path, settings.append_allowlist),
        max_skew=settings.proof_max_skew_seconds,
        admission=AdmissionLimits(
            requests_per_minute=settings.token_requests_per_minute_per_key,
            burst=settings.token_burst_per_key,
            replay_entries_per_key=settings.replay_memory_per_key,
            replay_entries=settings.replay_memory_max,
        ),
    )
    keys = KeyStore(KeyPaths(Path(settings.signing_key_path)), settings.token_ttl_max_seconds)
    return ControlService(config, keys)


@dataclass
class RunningControl:
    """A listening control service and the address it is bound to."""

    service: ControlService
    runner: web.AppRunner
    host: str
    port: int

    @property
    def base_url(self) -> str:
        """`http://host:port` of the listening socket (not necessarily the public URL)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        """Close the listening socket and finish in-flight requests."""
        await self.runner.cleanup()


async def start_control(service: ControlService, host: str, port: int) -> RunningControl:
    """Listen on `host:port` (0 picks a free port)."""
    app = build_app(service)
    install_http_limits(app, HttpLimits())
    runner = await runner_for(app, access_log=None, shutdown_timeout=2)
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    address = runner.addresses[0]
    return RunningControl(service, runner, address[0], address[1])


async def serve_forever(settings: ControlSettings) -> None:
    """Run until SIGINT/SIGTERM, printing one `ready` line that scripts and tests wait for."""
    service = service_from_settings(settings)
    running = await start_control(service, settings.listen.host, settings.listen.port)
    announce_ready("control", running.base_url, issuer=settings.public_url, kid=service.keys.signing_key().kid)
    await until_stop_signal()
    _log.info("stopping control")
    await running.stop()
