"""`autopilot-sync logs NAME`: the module log over `GET /v1/database/:name/logs`, as `spacetime logs` prints it.

Text lines read `<time> <LEVEL>: <file>:<line>: <message>` (a panic adds its trace); `--format json` prints the
host's records as they come. The route is the database owner's: the owner's key (or token) is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import click

from autopilot_sync.dbcli.answers import failure
from autopilot_sync.dbcli.target import Target, connection_options, credentials, resolve_target

#: Longest record line accepted from the host (its records are far smaller; this bounds a broken answer).
MAX_LINE_BYTES = 1024 * 1024
#: Lines `-f` starts with when `-n` is not given (as `spacetime logs -f`).
FOLLOW_DEFAULT_LINES = 10


def text_line(record: dict[str, Any]) -> str:
    """One record as `spacetime logs` prints it without colour."""
    parts = []
    ts = record.get("ts")
    if isinstance(ts, int):
        moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=ts)
        parts.append(moment.isoformat().replace("+00:00", "Z") + " ")
    parts.append(f"{str(record.get('level', '?')).upper():>5}: ")
    filename = record.get("filename")
    if filename:
        line_number = record.get("line_number")
        parts.append(f"{filename}:{line_number}" if line_number is not None else str(filename))
    parts.append(f": {record.get('message', '')}")
    text = "".join(parts)
    trace = record.get("trace")
    if isinstance(trace, list) and trace:
        frames = [f"  {i:>3}: {f.get('module_name', '?')}!{f.get('func_name', '?')}" for i, f in enumerate(trace)]
        text += "\nbacktrace:\n" + "\n".join(frames)
    return text


async def read_logs(target: Target, database: str, num_lines: int | None, follow: bool, as_json: bool) -> None:
    """Print the log (and, following, every new line until Ctrl-C or the host ends the answer)."""
    params = {"follow": "true" if follow else "false"}
    if num_lines is not None:
        params["num_lines"] = str(num_lines)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    url = target.database_url(database, "/logs")
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.get(url, params=params, headers=target.headers()) as answer,
    ):
        if answer.status != 200:
            raise failure(f"logs of {database}", answer.status, await answer.text())
        pending = b""
        async for chunk in answer.content.iter_any():
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if len(pending) > MAX_LINE_BYTES:
                raise click.ClickException(f"the host sent a log line longer than {MAX_LINE_BYTES} bytes")
            for line in lines:
                if line.strip():
                    _print(line, as_json)


def _print(line: bytes, as_json: bool) -> None:
    text = line.decode("utf-8", errors="replace")
    if not as_json:
        try:
            record = json.loads(text)
        except ValueError:
            record = None
        text = text_line(record) if isinstance(record, dict) else text
    click.echo(text)
    sys.stdout.flush()  # a follower's reader sees each line as it arrives


@click.command("logs")
@click.argument("database")
@click.option("--num-lines", "-n", type=click.IntRange(min=0, max=2**32 - 1), help="Only the last N lines.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until Ctrl-C (starts with the last 10).")
@click.option(
    "--format", "output", type=click.Choice(["text", "json"]), default="text", show_default=True, help="Output."
)
@connection_options
def logs(
    database: str,
    num_lines: int | None,
    follow: bool,
    output: str,
    server: str | None,
    token: str | None,
    anonymous: bool,
    key_file: Path | None,
    scopes: tuple[str, ...],
) -> None:
    """Print what DATABASE's module logged and how its reducers failed (as `spacetime logs`); owner only.

    \b
    Example:
      autopilot-sync logs chat -n 50
      autopilot-sync logs -f autopilot-sync --key-file ./var/owner/nostr.key   # ./dev up's owner key
    """
    if follow and num_lines is None:
        num_lines = FOLLOW_DEFAULT_LINES
    target = resolve_target(server, credentials(token, anonymous, key_file, scopes))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(read_logs(target, database, num_lines, follow, output == "json"))
