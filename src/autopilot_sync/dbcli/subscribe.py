"""`autopilot-sync subscribe NAME QUERY…`: subscribe through the Python SDK and print each update as a JSON line.

The line is `spacetime subscribe`'s: `{"<table>": {"deletes": [row…], "inserts": [row…]}}`, rows as typed SATS-JSON
objects keyed by column; an update of a row (same primary key) is its old row deleted and its new row inserted.
`-n N` stops after N transaction updates, `-t SECONDS` after that long (an error when `-n` was not reached yet), the
initial rows are printed only with `--print-initial-update`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from autopilot_sync.client import ChangeCause, ChangeKind, ClientError, RowChange, connect
from autopilot_sync.client.schema import ClientSchema
from autopilot_sync.dbcli.target import Target, connection_options, credentials, resolve_target
from autopilot_sync.spacetime.sats_json import to_json

#: Queries one command may subscribe (the host's per-set bound applies too).
MAX_QUERIES = 256


def update_line(schema: ClientSchema, changes: Sequence[RowChange]) -> str:
    """One update as `spacetime subscribe` prints it (tables in the order they first appear)."""
    tables: dict[str, dict[str, list[Any]]] = {}
    for change in changes:
        table = schema.tables[change.table]
        entry = tables.setdefault(change.table, {"deletes": [], "inserts": []})
        if change.kind in (ChangeKind.DELETE, ChangeKind.UPDATE):
            entry["deletes"].append(to_json(table.row_type, tuple(change.old), table.typespace))
        if change.kind in (ChangeKind.INSERT, ChangeKind.UPDATE):
            entry["inserts"].append(to_json(table.row_type, tuple(change.new), table.typespace))
    return json.dumps(tables, ensure_ascii=False, separators=(",", ":"))


def _say(line: str) -> None:
    click.echo(line)
    sys.stdout.flush()  # a pipe reader sees each update as it arrives


async def run_subscribe(
    target: Target, database: str, queries: Sequence[str], count: int | None, seconds: int | None, initial: bool
) -> None:
    """Subscribe, print updates, and end as the options say (one line on failure)."""
    received = 0
    done = asyncio.get_running_loop().create_future()

    try:
        connection = await connect(target.base_url, database, token=target.token)
    except ClientError as exc:
        raise click.ClickException(f"cannot subscribe to {database} at {target.base_url}: {exc}") from None

    def on_batch(changes: Sequence[RowChange]) -> None:
        nonlocal received
        if not changes or done.done():
            return
        cause = changes[0].cause
        if cause is ChangeCause.SUBSCRIBE_APPLIED:
            if initial:
                _say(update_line(connection.schema, changes))
            return
        if cause not in (ChangeCause.TRANSACTION, ChangeCause.REDUCER_RESULT):
            return
        _say(update_line(connection.schema, changes))
        received += 1
        if count is not None and received >= count:
            done.set_result(None)

    connection.cache.on_batch(on_batch)
    try:
        async with asyncio.timeout(seconds):
            query_set = await connection.subscribe(list(queries))
            try:
                await query_set.applied()
            except ClientError as exc:
                raise click.ClickException(f"the host refused the subscription: {exc}") from None
            if count == 0:
                return
            closed = asyncio.ensure_future(connection.wait_closed())
            await asyncio.wait([done, closed], return_when=asyncio.FIRST_COMPLETED)
            if not done.done() and count is not None:
                info = closed.result()
                raise click.ClickException(
                    f"the host closed the connection after {received} of {count} updates: {info.message}"
                )
    except ClientError as exc:  # the connection failed midway (the SDK's typed errors)
        raise click.ClickException(f"the subscription to {database} ended: {exc}") from None
    except TimeoutError:
        click.echo(f"timed out after {seconds}s", err=True)
        if count is not None and received < count:
            raise click.ClickException(f"timed out after {seconds}s with {received} of {count} updates") from None
    finally:
        with contextlib.suppress(Exception):
            await connection.close()


@click.command("subscribe")
@click.argument("database")
@click.argument("queries", nargs=-1, required=True)
@click.option("--num-updates", "-n", "count", type=click.IntRange(min=0), help="Stop after this many updates.")
@click.option("--timeout", "-t", type=click.IntRange(min=1), help="Stop after this many seconds.")
@click.option("--print-initial-update", "initial", is_flag=True, help="Print the rows the queries select now, first.")
@connection_options
def subscribe(
    database: str,
    queries: tuple[str, ...],
    count: int | None,
    timeout: int | None,
    initial: bool,
    server: str | None,
    token: str | None,
    anonymous: bool,
    key_file: Path | None,
    scopes: tuple[str, ...],
) -> None:
    """Subscribe to QUERIES on DATABASE and print every update as a JSON line (as `spacetime subscribe`).

    Runs until -n updates arrived, -t seconds passed (an error if -n was given and not reached), the host closes
    the connection, or Ctrl-C.

    \b
    Example:
      autopilot-sync subscribe chat "SELECT * FROM person" -n 1 -t 30
      autopilot-sync subscribe autopilot-sync "SELECT * FROM sync_event WHERE stream_id = 'runtime.demo'" | jq .
    """
    if len(queries) > MAX_QUERIES:
        raise click.UsageError(f"at most {MAX_QUERIES} queries at once")
    target = resolve_target(server, credentials(token, anonymous, key_file, scopes))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_subscribe(target, database, queries, count, timeout, initial))
