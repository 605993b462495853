"""`autopilot-sync call NAME FUNCTION ARGS…`: one reducer or procedure call over `POST /v1/database/:name/call/:fn`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import quote

import aiohttp
import click

from autopilot_sync.dbcli.answers import failure
from autopilot_sync.dbcli.target import Target, connection_options, credentials, resolve_target

#: Longest argument list sent (the host refuses more than its message limit anyway).
MAX_ARGS_BYTES = 1024 * 1024


def arguments_body(args: tuple[str, ...]) -> str:
    """The JSON array of SATS-JSON arguments, each ARG one JSON value; one line naming a bad one."""
    values = []
    for index, text in enumerate(args, start=1):
        try:
            values.append(json.loads(text))
        except ValueError:
            raise click.UsageError(
                f"argument {index} ({text[:40]!r}) is not JSON: arguments are SATS-JSON values, "
                f"so a string needs quotes: '\"{text[:20]}\"'"
            ) from None
    body = json.dumps(values, separators=(",", ":"))
    if len(body.encode("utf-8")) > MAX_ARGS_BYTES:
        raise click.UsageError(f"the arguments are larger than {MAX_ARGS_BYTES} bytes")
    return body


async def call_reducer(target: Target, database: str, reducer: str, body: str) -> None:
    """Call the reducer; one line with the host's reason when it did not commit."""
    headers = {**target.headers(), "Content-Type": "application/json"}
    url = target.database_url(database, f"/call/{quote(reducer, safe='')}")
    async with aiohttp.ClientSession() as http, http.post(url, data=body.encode("utf-8"), headers=headers) as answer:
        text = await answer.text()
        if answer.status != 200:
            what = f"reducer {reducer} failed" if answer.status == 530 else f"call {reducer} on {database}"
            raise failure(what, answer.status, text)
        if text:  # a procedure's return value (SATS-JSON); a reducer answers nothing
            click.echo(text)


@click.command("call")
@click.argument("database")
@click.argument("reducer")
@click.argument("args", nargs=-1)
@connection_options
def call(
    database: str,
    reducer: str,
    args: tuple[str, ...],
    server: str | None,
    token: str | None,
    anonymous: bool,
    key_file: Path | None,
    scopes: tuple[str, ...],
) -> None:
    """Call REDUCER (or procedure) of DATABASE with ARGS, each a SATS-JSON value (as `spacetime call`).

    Silent when a reducer commits; a procedure's return value is printed as SATS-JSON. A refusal or failure exits 1
    with its message.

    \b
    Example:
      autopilot-sync call chat add_person '"Ada"' 36
      autopilot-sync call chat send_message '"hello"' --key-file ~/.config/autopilot-sync/nostr.key
      autopilot-sync call autopilot-sync heartbeat --scope sync.subscribe
    """
    body = arguments_body(args)
    target = resolve_target(server, credentials(token, anonymous, key_file, scopes))
    asyncio.run(call_reducer(target, database, reducer, body))
