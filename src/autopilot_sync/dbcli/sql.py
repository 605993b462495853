"""`autopilot-sync sql NAME QUERY`: one query over `POST /v1/database/:name/sql`, printed as a table or JSON."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import click

from autopilot_sync.dbcli.answers import failure
from autopilot_sync.dbcli.table import render
from autopilot_sync.dbcli.target import Target, connection_options, credentials, resolve_target

#: The longest query sent (the host bounds its parse too; this only stops a mistake early).
MAX_QUERY_CHARS = 64 * 1024


async def run_sql(target: Target, database: str, query: str) -> list[dict[str, Any]]:
    """The host's `/sql` answer (statement results), or one line saying why not."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            target.database_url(database, "/sql"), data=query.encode("utf-8"), headers=target.headers()
        ) as answer,
    ):
        text = await answer.text()
        if answer.status != 200:
            raise failure(f"sql on {database}", answer.status, text)
    try:
        result = json.loads(text)
    except ValueError:
        result = None
    if not isinstance(result, list) or not all(isinstance(s, dict) and isinstance(s.get("rows"), list) for s in result):
        raise click.ClickException(f"{target.base_url} did not answer /sql as a SpacetimeDB host does: is it one?")
    return result


@click.command("sql")
@click.argument("database")
@click.argument("query")
@click.option("--json", "as_json", is_flag=True, help="Print the host's JSON answer (SpacetimeDB's /sql body) as is.")
@connection_options
def sql(
    database: str,
    query: str,
    as_json: bool,
    server: str | None,
    token: str | None,
    anonymous: bool,
    key_file: Path | None,
    scopes: tuple[str, ...],
) -> None:
    """Run one SQL query on DATABASE and print the rows as a table (as `spacetime sql`).

    Reads what your identity may read (row-level security applies; the owner sees every row).

    \b
    Example:
      autopilot-sync sql autopilot-sync "SELECT * FROM stream_head"
      autopilot-sync sql chat "SELECT name, age FROM person WHERE age > 30" --json | jq '.[0].rows'
    """
    if len(query) > MAX_QUERY_CHARS:
        raise click.UsageError(f"the query is longer than {MAX_QUERY_CHARS} characters")
    target = resolve_target(server, credentials(token, anonymous, key_file, scopes))
    result = asyncio.run(run_sql(target, database, query))
    click.echo(json.dumps(result, separators=(",", ":")) if as_json else render(result))
