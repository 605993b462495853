"""`autopilot-sync publish` and `autopilot-sync delete`, shaped after `spacetime publish` / `spacetime delete`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from autopilot_sync.cli_errors import Remedies, declare

DEFAULT_SERVER = "http://127.0.0.1:3000"

_SERVER = click.option(
    "--server",
    "-s",
    default=DEFAULT_SERVER,
    show_default=True,
    envvar="AUTOPILOT_SYNC_SERVER",
    help="Base URL of the host (env AUTOPILOT_SYNC_SERVER).",
)
_TOKEN = click.option(
    "--token",
    envvar="AUTOPILOT_SYNC_TOKEN",
    default=None,
    help="Bearer token of the database owner (env AUTOPILOT_SYNC_TOKEN); else one is fetched from --control "
    "with --key.",
)
_CONTROL = click.option("--control", "control_url", default=None, help="Control service URL to get a token from.")
_KEY = click.option(
    "--key",
    "key_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Nostr key file that signs the proof for --control (the operator's key: the database owner).",
)


def _token(token: str | None, control_url: str | None, key_path: Path | None) -> str:
    """The bearer token: given, or a session token from control for the operator's key."""
    if token:
        return token
    if not control_url or not key_path:
        raise click.ClickException("no token: give --token (or AUTOPILOT_SYNC_TOKEN), or --control URL with --key FILE")
    from autopilot_sync.control.client import TokenFetchError, fetch_session_token
    from autopilot_sync.nostr.keyfile import load_secret_key

    try:
        key = load_secret_key(key_path)
        grant = asyncio.run(fetch_session_token(control_url, key, ["sync.subscribe"], [], None, "cli"))
    except (OSError, ValueError, TokenFetchError) as exc:
        raise click.ClickException(f"no token from {control_url}: {exc}") from None
    return grant.token


@click.command("publish")
@_SERVER
@click.option("--delete-data", "-c", "delete_data", is_flag=True, help="Delete the data first (a new incarnation).")
@click.option(
    "--js-path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="JavaScript bundle to publish, as `autopilot-sync build` writes it.",
)
@click.option("--module", "python_module", default=None, help="Dotted path of a Python module installed on the host.")
@_TOKEN
@_CONTROL
@_KEY
@click.argument("name")
def publish(
    server: str,
    delete_data: bool,
    js_path: Path | None,
    python_module: str | None,
    token: str | None,
    control_url: str | None,
    key_path: Path | None,
    name: str,
) -> None:
    """Publish a module to the database NAME on a running host (created when the host has none).

    Changes SpacetimeDB's automatic migration accepts apply live and keep the data; anything else is refused with
    the schema diff unless --delete-data. Only the database's owner may update it.

    \b
    Example:
      autopilot-sync publish --module autopilot_sync.module --token "$TOKEN" autopilot-sync
      autopilot-sync publish --server http://127.0.0.1:3000 --js-path dist/module.js -c --token "$TOKEN" chat
    """
    from autopilot_sync.ops.host_publish import ModuleArtifact, publish_module

    declare(Remedies(unreachable="start the host, or pass --server", unauthorized="use the owner's token"))
    if (js_path is None) == (python_module is None):
        raise click.UsageError("give exactly one of --js-path FILE or --module DOTTED.PATH")
    artifact = ModuleArtifact.from_js_path(js_path) if js_path else ModuleArtifact(python_module=python_module)
    bearer = _token(token, control_url, key_path)
    answer = asyncio.run(publish_module(server, name, bearer, artifact, clear=delete_data))
    if not answer.ok:
        raise click.ClickException(f"publish of {artifact.describe()} to {name} refused: {answer.line()}")
    click.echo(f"{name}: {answer.line()}")
    for change in answer.changes:
        click.echo(f"  {change['subject']}: {change['detail']} [{change['severity']}]")


@click.command("delete")
@_SERVER
@_TOKEN
@_CONTROL
@_KEY
@click.argument("name")
def delete(server: str, token: str | None, control_url: str | None, key_path: Path | None, name: str) -> None:
    """Delete the database NAME and its data; the host then serves none until the next publish (owner only).

    \b
    Example:
      autopilot-sync delete --token "$TOKEN" chat
    """
    from autopilot_sync.ops.host_publish import delete_database

    declare(Remedies(unreachable="start the host, or pass --server", unauthorized="use the owner's token"))
    answer = asyncio.run(delete_database(server, name, _token(token, control_url, key_path)))
    if not answer.ok:
        raise click.ClickException(f"delete of {name} refused: {answer.line()}")
    click.echo(f"{name}: deleted")
