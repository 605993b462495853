"""`autopilot-sync control`: run the token service; `rotate-key`: change its signing key; `token`: get a token."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import click

from autopilot_sync.cli_errors import Remedies, declare
from autopilot_sync.control.keys import DEFAULT_PRUNE_AFTER_SECONDS, KeyFileError, KeyPaths, rotate, stage
from autopilot_sync.settings.control import ControlSettings
from autopilot_sync.settings.load import load_settings

_PREFIX = ControlSettings.env_prefix()


@click.group("control", invoke_without_command=True)
@click.option("--listen", help=f"HOST:PORT to listen on (env {_PREFIX}LISTEN, default 127.0.0.1:3100).")
@click.option("--public-url", help=f"URL clients reach this service at; the token issuer (env {_PREFIX}PUBLIC_URL).")
@click.option("--signing-key-path", help=f"PEM file of the signing key (env {_PREFIX}SIGNING_KEY_PATH).")
@click.option("--spacetime-base-url", help=f"Base URL of the Spacetime host (env {_PREFIX}SPACETIME_BASE_URL).")
@click.option("--database", help=f"Database the tokens are for (env {_PREFIX}DATABASE).")
@click.option("--log-level", default="INFO", show_default=True, help="Python logging level.")
@click.pass_context
def control(
    ctx: click.Context,
    listen: str | None,
    public_url: str | None,
    signing_key_path: str | None,
    spacetime_base_url: str | None,
    database: str | None,
    log_level: str,
) -> None:
    """Run the control service (POST /api/sync/token, OIDC discovery, JWKS, /metrics) until SIGINT/SIGTERM.

    A Nostr key proves itself with a NIP-98 `Authorization: Nostr ...` header and gets a short-lived ES256 session
    token for the Spacetime host. Every setting comes from the environment (see docs/configuration.md); a flag
    overrides its variable. Prints `autopilot-sync control ready: http://...` once it accepts connections.

    \b
    Example:
      AUTOPILOT_SYNC_CONTROL_PUBLIC_URL=http://127.0.0.1:3100 \\
      AUTOPILOT_SYNC_CONTROL_SIGNING_KEY_PATH=./var/control/signing.pem autopilot-sync control
      autopilot-sync control --signing-key-path ./var/control/signing.pem rotate-key
    """
    declare(Remedies(listen=f"--listen or {_PREFIX}LISTEN"))
    overrides = {
        "LISTEN": listen,
        "PUBLIC_URL": public_url,
        "SIGNING_KEY_PATH": signing_key_path,
        "SPACETIME_BASE_URL": spacetime_base_url,
        "DATABASE": database,
    }
    for name, value in overrides.items():
        if value is not None:
            os.environ[f"{_PREFIX}{name}"] = value
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if ctx.invoked_subcommand is not None:
        return
    settings = load_settings(ControlSettings)
    from autopilot_sync.control.policy_file import PolicyFileError
    from autopilot_sync.control.server import serve_forever

    try:
        asyncio.run(serve_forever(settings))
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from exc
    except PolicyFileError as exc:  # a configuration error, like a bad setting: one line, exit 2
        click.echo(f"error: {_PREFIX}POLICY_PATH: {exc}", err=True)
        ctx.exit(2)


def _key_paths() -> KeyPaths:
    """The key ring location, from `--signing-key-path` on the group or the environment."""
    value = os.environ.get(f"{_PREFIX}SIGNING_KEY_PATH")
    if not value:
        raise click.UsageError(f"set {_PREFIX}SIGNING_KEY_PATH or pass --signing-key-path before rotate-key")
    return KeyPaths(Path(value).expanduser())


@control.command("rotate-key")
@click.option("--stage", "stage_only", is_flag=True, help="Only create and publish the next key; do not sign with it.")
@click.option(
    "--prune-after",
    type=click.IntRange(min=0),
    default=DEFAULT_PRUNE_AFTER_SECONDS,
    show_default=True,
    help="Delete retired public key files older than this many seconds.",
)
def rotate_key(stage_only: bool, prune_after: int) -> None:
    """Make a new key sign from now on; the old one stays in the JWKS until its tokens have expired.

    A running control service picks the change up on its next request (no restart). With --stage the new key is
    only published (hosts can fetch it ahead of time); the next rotate-key promotes it. See docs/control.md.

    \b
    Example:
      autopilot-sync control --signing-key-path ./var/control/signing.pem rotate-key --stage
      sleep 300   # hosts cache JWKS for up to 5 minutes
      autopilot-sync control --signing-key-path ./var/control/signing.pem rotate-key
    """
    paths = _key_paths()
    try:
        if stage_only:
            result = stage(paths)
            click.echo(f"staged key {result.staged_kid} (published; signing remains {result.active_kid})")
            return
        result = rotate(paths, now=int(time.time()), prune_after=prune_after)
    except (KeyFileError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"signing with {result.active_kid}; retired {result.retired_kid} (published until its tokens expire)")
    for path in result.pruned:
        click.echo(f"pruned {path}")


@control.command("token")
@click.option("--url", "control_url", required=True, help="The control service's public URL (its token issuer).")
@click.option(
    "--key-file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Nostr secret key file (as the runtime and desktop keep theirs) that signs the NIP-98 proof.",
)
@click.option("--scope", "scopes", multiple=True, default=("sync.subscribe",), show_default=True, help="Repeatable.")
@click.option("--stream", "streams", multiple=True, help="Repeatable; none: what control's policy gives the key.")
@click.option("--ttl", type=click.IntRange(min=1), help="Token lifetime in seconds (default: the server's).")
@click.option("--client-kind", default="cli", show_default=True, help="Shown in presence.")
def token(
    control_url: str,
    key_file: Path,
    scopes: tuple[str, ...],
    streams: tuple[str, ...],
    ttl: int | None,
    client_kind: str,
) -> None:
    """Prove a Nostr key to a control service (NIP-98) and print the session token it issues, alone on stdout.

    For clients that cannot sign a NIP-98 proof themselves (e.g. a TypeScript app without a BIP-340 library; see
    docs/typescript.md): the token goes to the SDK as its `token`. Exits 1 with control's reason when refused.

    \b
    Example:
      TOKEN=$(autopilot-sync control token --url http://127.0.0.1:3100 --key-file ~/.config/me/nostr.key)
    """
    from autopilot_sync.control.client import TokenFetchError, fetch_session_token_for_key_file
    from autopilot_sync.nostr.errors import NostrKeyError

    try:
        session = asyncio.run(
            fetch_session_token_for_key_file(control_url, key_file, scopes, list(streams) or None, ttl, client_kind)
        )
    except (NostrKeyError, TokenFetchError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(session.token)
