"""The host's answers as one line: a non-2xx status becomes `ClickException` with the host's own words.

SpacetimeDB's routes answer errors as plain text (`400 invalid arguments …`, `403 … not authorized …`, `530` for a
reducer that failed); a command shows that text, prefixed with what it tried, and adds what to do for the statuses a
user can fix.
"""

from __future__ import annotations

import click

#: Longest piece of a host's error body shown (a body is the host's message, never a page of HTML).
MAX_SHOWN = 500

_REMEDY = {
    401: "the token was refused: get a fresh one (drop --token, or check the server's control URL)",
    403: "this identity may not do that: use the owner's key (--key-file) or a token with the needed scope (--scope)",
    404: "check the database name (and --server)",
}


def failure(what: str, status: int, body: str) -> click.ClickException:
    """`<what>: HTTP <status>: <host's text>[: <remedy>]` as one line."""
    text = " ".join(body.split())[:MAX_SHOWN] or "(no message)"
    remedy = _REMEDY.get(status)
    return click.ClickException(f"{what}: HTTP {status}: {text}" + (f": {remedy}" if remedy else ""))
