"""`autopilot-sync token`: prove the local Nostr key to the server's control and print the session token."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from autopilot_sync.dbcli.target import DEFAULT_SCOPES, resolve_server, server_option, session_token


@click.command("token")
@server_option
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Nostr key to prove (default: the server's, else yours, ~/.config/autopilot-sync/nostr.key).",
)
@click.option("--scope", "scopes", multiple=True, help="Repeatable; default sync.subscribe.")
@click.option("--stream", "streams", multiple=True, help="Repeatable; none: what control's policy gives the key.")
@click.option("--ttl", type=click.IntRange(min=1), help="Token lifetime in seconds (default: control's).")
def token(
    server: str | None, key_file: Path | None, scopes: tuple[str, ...], streams: tuple[str, ...], ttl: int | None
) -> None:
    """Sign a NIP-98 proof with your Nostr key and print the session token control issues, alone on stdout.

    The same exchange as `autopilot-sync control token`, against the server's control URL (`server list`). Pass the
    token to other commands with --token, or to an SDK.

    \b
    Example:
      TOKEN=$(autopilot-sync token)
      autopilot-sync token --server prod --scope sync.subscribe --scope sync.append --ttl 600
    """
    target = resolve_server(server)
    wanted = tuple(scopes) or DEFAULT_SCOPES
    click.echo(asyncio.run(session_token(target, key_file, wanted, tuple(streams) or None, ttl)))
