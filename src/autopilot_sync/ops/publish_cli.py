"""`autopilot-sync publish` and `autopilot-sync delete`, shaped after `spacetime publish` / `spacetime delete`.

They name the host as the other database commands do (`dbcli/`: `--server NAME|URL`, a token from the server's
control for your Nostr key unless `--token`), and call the host's publish routes through `ops/host_publish.py`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from autopilot_sync.dbcli.answers import failure
from autopilot_sync.dbcli.target import connection_options, credentials, resolve_target
from autopilot_sync.ops.host_publish import ModuleArtifact, PublishAnswer, delete_database, publish_module


def _token_or_refuse(token: str | None, what: str) -> str:
    if not token:
        raise click.ClickException(
            f"{what} needs the owner's token: the server has no control URL; pass --token, or add the server with "
            "`autopilot-sync server add NAME --url URL --control-url URL`"
        )
    return token


def _refused(what: str, answer: PublishAnswer) -> click.ClickException:
    """The host's refusal: its readable diff (if any) on stderr, then one line."""
    first, _, rest = answer.text.strip().partition("\n")
    if rest:
        click.echo(rest, err=True)
    return failure(what, answer.status, first)


@click.command("publish")
@click.option("--delete-data", "-c", "delete_data", is_flag=True, help="Delete the data first (a new incarnation).")
@click.option(
    "--break-clients",
    is_flag=True,
    help="Allow a migration that disconnects clients to fetch new row shapes (a column added), as SpacetimeDB's.",
)
@click.option(
    "--js-path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="TypeScript module bundle to publish, as `autopilot-sync build` writes it.",
)
@click.option("--module", "python_module", default=None, help="Dotted path of a Python module installed on the host.")
@connection_options
@click.argument("name")
def publish(
    delete_data: bool,
    break_clients: bool,
    js_path: Path | None,
    python_module: str | None,
    server: str | None,
    token: str | None,
    anonymous: bool,
    key_file: Path | None,
    scopes: tuple[str, ...],
    name: str,
) -> None:
    """Publish a module to the database NAME on a running host (created when the host has none).

    Changes SpacetimeDB's automatic migration accepts apply live and keep the data (those that change a table's row
    shape, a column added, need --break-clients); anything else is refused with the schema diff unless
    --delete-data. Only the database's owner may update it.

    \b
    Example:
      autopilot-sync publish --module autopilot_sync.module autopilot-sync
      autopilot-sync publish --server http://127.0.0.1:3000 --js-path dist/module.js -c chat
    """
    if (js_path is None) == (python_module is None):
        raise click.UsageError("give exactly one of --js-path FILE or --module DOTTED.PATH")
    target = resolve_target(server, credentials(token, anonymous, key_file, scopes))
    artifact = ModuleArtifact.from_js_path(js_path) if js_path else ModuleArtifact(python_module=python_module)
    bearer = _token_or_refuse(target.token, "publish")
    answer = asyncio.run(
        publish_module(target.base_url, name, bearer, artifact, clear=delete_data, break_clients=break_clients)
    )
    if not answer.ok:
        raise _refused(f"publish of {artifact.describe()} to {name}", answer)
    click.echo(f"{name}: {answer.line()}")
    for change in answer.changes:
        click.echo(f"  {change['subject']}: {change['detail']} [{change['severity']}]")


@click.command("delete")
@connection_options
@click.argument("name")
def delete(
    server: str | None, token: str | None, anonymous: bool, key_file: Path | None, scopes: tuple[str, ...], name: str
) -> None:
    """Delete the database NAME and its data; the host then serves none until the next publish (owner only).

    \b
    Example:
      autopilot-sync delete chat
      autopilot-sync delete --server staging autopilot-sync
    """
    target = resolve_target(server, credentials(token, anonymous, key_file, scopes))
    answer = asyncio.run(delete_database(target.base_url, name, _token_or_refuse(target.token, "delete")))
    if not answer.ok:
        raise _refused(f"delete of {name}", answer)
    click.echo(f"{name}: deleted")
