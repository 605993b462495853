"""`GET /v1/database/:name/logs?num_lines=N&follow=true|false`: the module log, as SpacetimeDB's `logs` route answers.

Owner only: a token that fails verification is a 401 (as on every database route); any identity but the database
owner's — an anonymous one minted for a request without a token included — gets SpacetimeDB's 403
`<identity> is not authorized to perform action on database <database>: view module logs`. The answer is
`application/x-ndjson` with `Cache-Control: no-cache`, one record per line (`module_log.py`). Without `num_lines`
every kept line is sent; with `follow=true` the last `num_lines` (at most 2500, none without it) are sent, then
every new line until the client goes away. Inputs are bounded: `num_lines` is a u32 (and never yields more than the
capped files hold), and at most `MAX_FOLLOWERS` readers follow at once (one more is a 503).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from aiohttp import web

from autopilot_sync.host.http_api import resolve_database_request
from autopilot_sync.host.module_log import ModuleLog

MODULE_LOG_KEY = web.AppKey("autopilot_sync.host.module_log", ModuleLog)
STOPPING_KEY = web.AppKey("autopilot_sync.host.logs_stopping", asyncio.Event)
#: Readers following the log at once.
MAX_FOLLOWERS = 32
#: How often a quiet follow checks that its client is still there.
LIVENESS_SECONDS = 1.0
_U32_MAX = 2**32 - 1


def _query(request: web.Request) -> tuple[int | None, bool] | str:
    """`(num_lines, follow)`, or the 400 text (serde's words, as axum's query rejection answers)."""
    for name in ("num_lines", "follow"):
        if len(request.query.getall(name, [])) > 1:
            return f"Failed to deserialize query string: duplicate field `{name}`"
    num_lines: int | None = None
    raw = request.query.get("num_lines")
    if raw is not None:
        if not raw.isdigit() or len(raw) > 10 or int(raw) > _U32_MAX:
            return "Failed to deserialize query string: num_lines: invalid digit found in string"
        num_lines = int(raw)
    follow_text = request.query.get("follow", "false")
    if follow_text not in ("true", "false"):
        return "Failed to deserialize query string: follow: provided string was not `true` or `false`"
    return num_lines, follow_text == "true"


async def logs(request: web.Request) -> web.StreamResponse:
    """Answer the module log (see the module docstring)."""
    engine, auth = await resolve_database_request(request)
    headers = auth.identity_headers()
    if auth.identity != engine.owner_identity:
        database = getattr(engine, "database_identity", None)
        named = database.hex if database is not None else engine.database_name
        message = f"{auth.identity.hex} is not authorized to perform action on database {named}: view module logs"
        return web.Response(status=403, text=message, headers=headers)
    parsed = _query(request)
    if isinstance(parsed, str):
        return web.Response(status=400, text=parsed, headers=headers)
    num_lines, follow = parsed
    log = request.app[MODULE_LOG_KEY]
    if follow and log.followers >= MAX_FOLLOWERS:
        return web.Response(status=503, text="Logs are temporarily not available: too many followers", headers=headers)
    response = web.StreamResponse(
        headers={**headers, "Content-Type": "application/x-ndjson", "Cache-Control": "no-cache"}
    )
    if not follow:
        with log.read(num_lines) as chunks:
            await response.prepare(request)
            with contextlib.suppress(ConnectionError):
                await _send(response, chunks)
                await response.write_eof()
        return response
    with log.follow(num_lines) as (chunks, queue):
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            await _send(response, chunks)
            while True:
                try:
                    line = await asyncio.wait_for(queue.get(), LIVENESS_SECONDS)
                except TimeoutError:
                    transport = request.transport
                    if transport is None or transport.is_closing() or request.app[STOPPING_KEY].is_set():
                        break  # the client went away, or the host is stopping
                    continue
                await response.write(line)
    return response


async def _send(response: web.StreamResponse, chunks: Iterator[bytes]) -> None:
    """Write the chunks as they are read from disk (in a thread: the event loop never waits for the disk)."""
    while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
        await response.write(chunk)


def add_logs_route(app: web.Application, log: ModuleLog) -> None:
    """Mount the logs route for the database whose module log is `log`."""
    app[MODULE_LOG_KEY] = log
    app[STOPPING_KEY] = stopping = asyncio.Event()

    async def stop_following(_: web.Application) -> None:
        stopping.set()  # followers end within LIVENESS_SECONDS instead of holding the shutdown to its timeout

    app.on_shutdown.append(stop_following)
    app.router.add_get("/v1/database/{name}/logs", logs)
