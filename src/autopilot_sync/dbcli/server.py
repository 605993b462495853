"""`autopilot-sync server list|add|set-default`: name the hosts the database commands talk to."""

from __future__ import annotations

from pathlib import Path

import click

from autopilot_sync.dbcli import servers
from autopilot_sync.dbcli.servers import Server, ServerConfigError


@click.group("server")
def server() -> None:
    """Manage the servers `sql`, `call`, `subscribe`, `logs` and `token` talk to (in ~/.config/autopilot-sync/cli.toml).

    Without any configured, `local` is the default: the host and control `./dev up` starts (127.0.0.1:3000, :3100).

    \b
    Example:
      autopilot-sync server add prod --url https://sync.example.com --control-url https://control.example.com
      autopilot-sync server set-default prod
      autopilot-sync server list
    """


@server.command("list")
def list_servers() -> None:
    """List the servers; `***` marks the default.

    \b
    Example:
      autopilot-sync server list
    """
    found = _load()
    rows = [("DEFAULT", "NAME", "URL", "CONTROL", "KEY")]
    for entry in found.servers:
        mark = "***" if entry.name == found.default else ""
        rows.append((mark, entry.name, entry.url, entry.control_url or "-", entry.key_file or "(yours)"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@server.command("add")
@click.argument("name")
@click.option("--url", required=True, help="The host's base URL (what /v1/... is under).")
@click.option("--control-url", help="The control service that issues tokens for this host (none: anonymous).")
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Nostr key to prove with on this server (default: yours, ~/.config/autopilot-sync/nostr.key).",
)
@click.option("--default", "-d", "make_default", is_flag=True, help="Make it the default server.")
def add(name: str, url: str, control_url: str | None, key_file: Path | None, make_default: bool) -> None:
    """Add a server under NAME.

    \b
    Example:
      autopilot-sync server add staging --url http://10.0.0.5:3000 --control-url http://10.0.0.5:3100 --default
      autopilot-sync server add owner --url http://127.0.0.1:3000 --control-url http://127.0.0.1:3100 \\
        --key-file ./var/owner/nostr.key
    """
    try:
        entry = Server(
            name,
            servers.check_url(url),
            servers.check_url(control_url, "--control-url") if control_url else None,
            str(key_file.expanduser().resolve()) if key_file else None,
        )
        updated = _load().with_server(entry, make_default=make_default)
        path = servers.save(updated)
    except ServerConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"added {name} ({entry.url}) to {path}" + (" as the default" if updated.default == name else ""))


@server.command("set-default")
@click.argument("server_name", metavar="NAME|URL")
def set_default(server_name: str) -> None:
    """Make a configured server the default.

    \b
    Example:
      autopilot-sync server set-default staging
    """
    try:
        updated = _load().with_default(server_name)
        path = servers.save(updated)
    except ServerConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"default server: {updated.default} ({path})")


def _load() -> servers.ServerList:
    try:
        return servers.load()
    except ServerConfigError as exc:
        raise click.ClickException(str(exc)) from None
