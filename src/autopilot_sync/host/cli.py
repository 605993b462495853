"""`autopilot-sync host`: run the embedded Spacetime host."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import click

from autopilot_sync.cli_errors import Remedies, check_can_listen, declare
from autopilot_sync.lifecycle import event_loop_factory
from autopilot_sync.settings.host import HostSettings
from autopilot_sync.settings.load import load_settings
from autopilot_sync.statedir import lock_or_exit


@click.command("host")
@click.option("--listen", help="HOST:PORT to listen on (env AUTOPILOT_SYNC_HOST_LISTEN, default 127.0.0.1:3000).")
@click.option("--data-dir", help="Commit log and snapshot directory (env AUTOPILOT_SYNC_HOST_DATA_DIR).")
@click.option("--database", help="Database name served under /v1/database/:name (env AUTOPILOT_SYNC_HOST_DATABASE).")
@click.option(
    "--module",
    "module_path",
    help="Module to run: a dotted Python path, or a built TypeScript module PATH.js/.mjs "
    "(env AUTOPILOT_SYNC_HOST_MODULE).",
)
@click.option("--log-level", default="INFO", show_default=True, help="Python logging level.")
def host(
    listen: str | None, data_dir: str | None, database: str | None, module_path: str | None, log_level: str
) -> None:
    """Run the embedded Spacetime host (HTTP API + v2/v3 WebSocket) until SIGINT/SIGTERM.

    Every setting comes from the environment (see docs/configuration.md); a flag overrides its variable.
    Prints `autopilot-sync host ready: http://...` once it accepts connections. One host per data directory: a
    second one exits 2 naming the PID that holds it. A module published over HTTP (`autopilot-sync publish`)
    replaces the running one without a restart, and is what the next start runs (docs/host-http.md "Publish").

    \b
    Example:
      autopilot-sync host --listen 127.0.0.1:3000 --data-dir ./var/host
      AUTOPILOT_SYNC_HOST_MODULE=autopilot_sync.examples.chat autopilot-sync host --database chat
      autopilot-sync host --module ./dist/chat.js --database chat
      autopilot-sync host --module "" --database chat   # no database yet: `autopilot-sync publish` creates it
    """
    declare(Remedies(listen=f"--listen or {HostSettings.env_prefix()}LISTEN"))
    overrides = {"LISTEN": listen, "DATA_DIR": data_dir, "DATABASE": database, "MODULE": module_path}
    for name, value in overrides.items():
        if value is not None:
            os.environ[f"{HostSettings.env_prefix()}{name}"] = value
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings(HostSettings)
    # Held until the process exits: a second host on this directory exits 2 naming this one's PID.
    lock_or_exit(Path(settings.data_dir), "host data directory", "host")
    check_can_listen(settings.listen.host, settings.listen.port)  # before recovery, which may take a while
    from autopilot_sync.auth.client_tls import import_aiohttp_deferring_client_tls

    import_aiohttp_deferring_client_tls()  # before anything imports aiohttp: its CA bundle loads with the first client
    from autopilot_sync.host.server import ModuleLoadError, serve_forever

    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(serve_forever(settings))
    except ModuleLoadError as exc:
        raise click.ClickException(str(exc)) from exc
