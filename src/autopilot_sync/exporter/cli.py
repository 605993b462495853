"""`autopilot-sync exporter`: serve the sync module's per-stream gauges; `exporter identity` names who it reads as."""

from __future__ import annotations

import asyncio
import logging
import os

import click

from autopilot_sync.cli_errors import Remedies, declare
from autopilot_sync.settings.exporter import ExporterSettings

_PREFIX = ExporterSettings.env_prefix()


@click.group("exporter", invoke_without_command=True)
@click.option("--listen", help=f"HOST:PORT of /metrics and /healthz (env {_PREFIX}LISTEN, default 127.0.0.1:3400).")
@click.option("--log-level", default="INFO", show_default=True, help="Python logging level.")
@click.pass_context
def exporter(ctx: click.Context, listen: str | None, log_level: str) -> None:
    """Export per-stream lag and replay gap, read from the sync tables over the protocol, on /metrics.

    Without a subcommand it serves until SIGINT/SIGTERM and prints `autopilot-sync exporter ready: http://...`.
    It reads as a read-only observer: put its identity (`autopilot-sync exporter identity`) in the host's
    AUTOPILOT_SYNC_HOST_OBSERVER_IDENTITIES. A misconfiguration (key refused, no sync database, not an observer)
    exits 2.
    Every setting comes from the environment (see docs/configuration.md); a flag overrides its variable.

    \b
    Example:
      AUTOPILOT_SYNC_EXPORTER_NOSTR_KEY_PATH=./var/exporter/nostr.key autopilot-sync exporter
      curl -s http://127.0.0.1:3400/metrics | grep stream_sequence_lag
    """
    if ctx.invoked_subcommand is not None:
        return
    declare(Remedies(listen=f"--listen or {_PREFIX}LISTEN"))
    if listen is not None:
        os.environ[f"{_PREFIX}LISTEN"] = listen
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from autopilot_sync.exporter.service import serve_forever
    from autopilot_sync.settings.load import load_settings

    asyncio.run(serve_forever(load_settings(ExporterSettings)))


@exporter.command("identity")
@click.option("--issuer", help=f"Control's public URL, its token issuer (default: {_PREFIX}CONTROL_URL).")
def identity(issuer: str | None) -> None:
    """Print the identity the host gives the exporter's key (creating the 0600 key file on first use).

    The host derives it from control's issuer and the key (SpacetimeDB's Identity::from_claims), so it is known
    before any token exists: add it to AUTOPILOT_SYNC_HOST_OBSERVER_IDENTITIES.

    \b
    Example:
      AUTOPILOT_SYNC_EXPORTER_NOSTR_KEY_PATH=./var/exporter/nostr.key autopilot-sync exporter identity
    """
    from autopilot_sync.nostr.keyfile import load_or_create_secret_key
    from autopilot_sync.settings.load import load_settings
    from autopilot_sync.spacetime.identity import identity_from_claims

    settings = load_settings(ExporterSettings)
    key = load_or_create_secret_key(settings.nostr_key_path).secret
    click.echo(identity_from_claims(issuer or settings.control_url, key.public_key().hex).hex)
