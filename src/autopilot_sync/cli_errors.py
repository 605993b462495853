"""The one place where the failures a user meets first become one line that says what to do.

A busy port, a service that is not running, a URL that answers with an HTTP error: these are not bugs, so they
must not end in a traceback. Each command declares, when it starts, what the user should change when they happen
(`declare`: the flag and variable of its listen address, or where else to look when a URL is unreachable); the CLI
group (`cli.FriendlyGroup`; `launch.py` for the host's fast path without click) turns those exception families into
`Error: <one line>` with a non-zero exit. Anything else still raises with its traceback: an unknown failure is a bug
to report. No click at import: the host's fast path uses `one_line` and `check_can_listen` without it.
"""

from __future__ import annotations

import errno
import os
import re
import socket
from dataclasses import dataclass

#: Where `declare` keeps the remedies in the click context (`cli.FriendlyGroup` reads them back).
REMEDIES_KEY = "autopilot_sync.remedies"
_BIND_ADDRESS = re.compile(r"address \('([^']*)', (\d+)")


@dataclass(frozen=True, slots=True)
class Remedies:
    """What the user should do when the usual failures of one command happen."""

    listen: str | None = None
    """Flag and variable choosing the listen address, e.g. `--listen or AUTOPILOT_SYNC_HOST_LISTEN`."""
    unreachable: str | None = None
    """What to do when the URL the command talks to does not answer, e.g. `start the runtime, or pass --url`."""
    unauthorized: str | None = None
    """What to do when the URL answers 401/403, e.g. `use --socket, or --token with a token from control`."""


def declare(remedies: Remedies) -> None:
    """Record the running command's remedies (in the click context chain, read back by `cli.FriendlyGroup`)."""
    import click  # here, not at import: `autopilot_sync.launch` runs the host with `one_line` and without click

    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta[REMEDIES_KEY] = remedies


def one_line(exc: BaseException, remedies: Remedies) -> str | None:
    """The sentence for `exc`, or None when it is not a failure a user can fix (then it stays a traceback)."""
    # From the submodule, not the package: the host imports aiohttp's server alone (auth/aiohttp_client.py).
    from aiohttp.client_exceptions import (
        ClientConnectorError,
        ClientError,
        ClientResponseError,
        UnixClientConnectorError,
    )

    if isinstance(exc, ClientConnectorError):
        code = exc.os_error.errno
        reason = os.strerror(code).lower() if code else str(exc.os_error) or type(exc.os_error).__name__
        where = exc.path if isinstance(exc, UnixClientConnectorError) else f"{exc.host}:{exc.port}"
        return _with(f"cannot reach {where} ({reason})", remedies.unreachable)
    if isinstance(exc, ClientResponseError):
        remedy = remedies.unauthorized if exc.status in (401, 403) else remedies.unreachable
        return _with(f"{exc.request_info.real_url} answered HTTP {exc.status} {exc.message}", remedy)
    if isinstance(exc, ClientError):
        return _with(f"the connection failed ({type(exc).__name__}: {exc})", remedies.unreachable)
    if isinstance(exc, TimeoutError):
        return _with("no answer in time", remedies.unreachable)
    if isinstance(exc, OSError) and exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
        found = _BIND_ADDRESS.search(str(exc))
        if found is None and exc.errno == errno.EACCES:
            return None  # a permission error on a file, not on a listen address
        address = f"{found.group(1)}:{found.group(2)}" if found else "the listen address"
        problem = {
            errno.EADDRINUSE: f"{address} is already in use",
            errno.EADDRNOTAVAIL: f"{address} is not an address of this machine",
            errno.EACCES: f"not allowed to listen on {address}",
        }[exc.errno]
        return _with(problem, f"choose another with {remedies.listen}" if remedies.listen else None)
    return None


def check_can_listen(host: str, port: int) -> None:
    """Bind and release `host:port` now, for a service that does slow work (recovery) before it listens.

    A busy port then fails first, as the one line `one_line` makes, instead of after minutes of log replay. The
    real bind still decides (another process may take the port in between); this only moves the common case up.
    """
    if port == 0:
        return
    try:
        socket.create_server((host, port)).close()
    except OSError as exc:
        where = f"address ('{host}', {port})"  # the form asyncio's own bind error uses, which one_line reads
        raise OSError(exc.errno, f"error while attempting to bind on {where}: {exc.strerror}") from exc


def _with(problem: str, remedy: str | None) -> str:
    return f"{problem}: {remedy}" if remedy else problem
