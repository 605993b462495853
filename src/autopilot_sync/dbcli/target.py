"""Who and where: the shared options of every database command, resolved to a base URL and a token.

How a command gets its token, in order (`--help` of each command says the same):
1. `--token TOKEN`: used as given (a token from `autopilot-sync token`, or any the host accepts);
2. `--anonymous`: none; the host mints a fresh identity for the request, as SpacetimeDB does;
3. the server has a `control_url`: the Nostr key (`--key-file`, else the server's `key_file`, else the user's key
   `~/.config/autopilot-sync/nostr.key`, the desktop's) signs a NIP-98 proof and control issues a session token for
   `--scope` (default `sync.subscribe`); the identity is the one control's tokens give that key, so the database
   owner's key reads the owner-only routes (logs);
4. otherwise anonymous.
`publish` and `delete` reuse `connection_options` and `resolve_target`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import click

from autopilot_sync.cli_errors import Remedies, declare
from autopilot_sync.dbcli import servers
from autopilot_sync.dbcli.servers import Server, ServerConfigError

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_SCOPES = ("sync.subscribe",)


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the shared options said about identity (before any network call)."""

    token: str | None = None
    anonymous: bool = False
    key_file: Path | None = None
    scopes: tuple[str, ...] = DEFAULT_SCOPES


@dataclass(frozen=True, slots=True)
class Target:
    """A resolved server and the token to send (None: anonymous)."""

    server: Server
    token: str | None

    @property
    def base_url(self) -> str:
        """The host's base URL."""
        return self.server.url

    def headers(self) -> dict[str, str]:
        """The `Authorization` header, when there is a token."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def database_url(self, database: str, route: str = "") -> str:
        """`<base>/v1/database/<database><route>` (the name quoted: it is one path segment, whatever it holds)."""
        return f"{self.base_url}/v1/database/{quote(database, safe='')}{route}"


def server_option(function: F) -> F:
    """`--server NAME|URL` alone (for `token`, which needs no host token)."""
    return click.option(
        "--server",
        "-s",
        "server",
        metavar="NAME|URL",
        help="A server from `autopilot-sync server list`, or a host URL; default: the default server.",
    )(function)


def connection_options(function: F) -> F:
    """`--server`, `--token`, `--anonymous`, `--key-file`, `--scope`: add them to a command in one line."""
    options = [
        click.option(
            "--scope",
            "scopes",
            multiple=True,
            help="Scope asked of control (repeatable).",
            show_default="sync.subscribe",
        ),
        click.option(
            "--key-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Nostr key that proves who you are to the server's control (default: the server's, else yours).",
        ),
        click.option("--anonymous", is_flag=True, help="Send no token: the host mints a fresh identity."),
        click.option("--token", help="Use this token as is (e.g. from `autopilot-sync token`)."),
        server_option,
    ]
    for option in options:
        function = option(function)
    return function


def credentials(token: str | None, anonymous: bool, key_file: Path | None, scopes: tuple[str, ...]) -> Credentials:
    """The identity options as one value (`--token` and `--anonymous` exclude each other)."""
    if token and anonymous:
        raise click.UsageError("--token and --anonymous exclude each other")
    return Credentials(token, anonymous, key_file, tuple(scopes) or DEFAULT_SCOPES)


def resolve_server(name_or_url: str | None) -> Server:
    """The server `--server` names (or the default), as one line on failure."""
    try:
        return servers.resolve(name_or_url, servers.load())
    except ServerConfigError as exc:
        raise click.ClickException(str(exc)) from None


def key_file_for(server: Server, key_file: Path | None) -> Path:
    """`--key-file`, else the server's, else the user's key (the desktop's, in the config dir)."""
    if key_file is not None:
        return key_file.expanduser()
    if server.key_file:
        return Path(server.key_file).expanduser()
    from autopilot_sync.desktop.identity import key_path

    return key_path(servers.config_dir())


async def session_token(
    server: Server,
    key_file: Path | None,
    scopes: tuple[str, ...],
    streams: tuple[str, ...] | None = None,
    ttl: int | None = None,
) -> str:
    """A session token from the server's control for the key (one NIP-98 proof), or one line saying why not."""
    from autopilot_sync.control.client import TokenFetchError, fetch_session_token_for_key_file
    from autopilot_sync.nostr.errors import NostrKeyError

    if not server.control_url:
        raise click.ClickException(
            f"server {server.name!r} has no control URL to get a token from: "
            "`autopilot-sync server add NAME --url URL --control-url URL`, or pass --token"
        )
    path = key_file_for(server, key_file)
    try:
        session = await fetch_session_token_for_key_file(server.control_url, path, scopes, streams, ttl, "cli")
    except NostrKeyError as exc:
        hint = "" if path.exists() else " (run `autopilot-sync desktop` once to create your key, or pass --key-file)"
        raise click.ClickException(f"{exc.message}{hint}") from None
    except TokenFetchError as exc:
        raise click.ClickException(
            f"control at {server.control_url} gave no token for {path}: {exc}: use another key (--key-file), "
            "a token (--token), or --anonymous"
        ) from None
    return session.token


def resolve_target(server_name: str | None, creds: Credentials) -> Target:
    """The server and the token a command sends (see the module docstring for the order)."""
    server = resolve_server(server_name)
    declare(
        Remedies(
            unreachable=f"is the host at {server.url} running? (`./dev up` starts one) or pick another with --server",
            unauthorized="use the owner's key (--key-file) or a token that may do this (--token)",
        )
    )
    if creds.token:
        return Target(server, creds.token)
    if creds.anonymous or not server.control_url:
        return Target(server, None)
    return Target(server, asyncio.run(session_token(server, creds.key_file, creds.scopes)))
