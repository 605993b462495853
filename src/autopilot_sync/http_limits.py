"""Half-sent HTTP requests cannot hold a server: a head timeout, a body timeout and a cap on pending connections.

aiohttp waits for a request head and body as long as the client keeps the socket open, so a few hundred
"slowloris" connections (a header line every few seconds, or a body that never finishes) stay open forever. Three
bounds close that, shared by every service that serves HTTP:

- **head timeout**: a connection that has not sent a complete request head this long after it opened, or after its
  previous response, is closed. This is aiohttp's keep-alive timer, which also runs from the moment a connection
  opens and closes a connection still waiting for a head when it fires: the runner is created with it.
- **body timeout**: a request whose body has not fully arrived this long after its head gets `408` (a middleware
  runs the route under a deadline that is lifted the moment the body's end arrives).
- **pending cap**: at most this many connections may be waiting for their first complete request head; one more is
  closed at once, so a flood of idle sockets cannot take every file descriptor while the head timeout runs.

WebSocket upgrades leave all three behind once upgraded (the socket has its own ping/idle timeout).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """The three bounds, in seconds and connections."""

    #: longer than aiohttp clients keep idle pooled connections (15 s), so a reused connection is never cut mid-reuse
    header_timeout: float = 20.0
    body_timeout: float = 30.0
    max_pending_connections: int = 1024

    def runner_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `web.AppRunner` that enforce the head timeout."""
        return {"keepalive_timeout": self.header_timeout}


class _PendingGuard:
    """Counts connections that have not completed a first request head; refuses new ones over the cap."""

    def __init__(self, limits: HttpLimits) -> None:
        self.limits = limits
        self.pending: set[RequestHandler] = set()

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """The head is complete: the connection no longer counts as pending; read a body within the body timeout."""
        protocol = request.protocol
        if isinstance(protocol, RequestHandler):
            self.pending.discard(protocol)
        if not request.body_exists or request.content.is_eof():
            return await handler(request)
        try:
            async with asyncio.timeout(self.limits.body_timeout) as scope:
                # once the whole body is in, the route may take as long as it needs
                request.content.on_eof(lambda: scope.reschedule(None))
                return await handler(request)
        except TimeoutError:
            if not scope.expired():
                raise
            raise web.HTTPRequestTimeout(
                text=f"request body not received within {self.limits.body_timeout:g} s"
            ) from None

    def attach(self, server: web.Server) -> None:
        """Wrap the server's connection bookkeeping so each new connection is counted (or refused) and forgotten."""
        made = server.connection_made
        lost = server.connection_lost
        pending = self.pending
        cap = self.limits.max_pending_connections

        def connection_made(handler: RequestHandler, transport: asyncio.Transport) -> None:
            made(handler, transport)
            if len(pending) >= cap:
                transport.abort()
                return
            pending.add(handler)

        def connection_lost(handler: RequestHandler, exc: BaseException | None = None) -> None:
            pending.discard(handler)
            lost(handler, exc)

        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]


_GUARD_KEY = web.AppKey("autopilot_sync.http_limits.guard", _PendingGuard)


def install_http_limits(app: web.Application, limits: HttpLimits) -> None:
    """Add the body-timeout middleware to `app` (before it starts); `runner_for` then applies the rest."""
    guard = _PendingGuard(limits)
    app[_GUARD_KEY] = guard
    app.middlewares.append(guard.middleware)


async def runner_for(app: web.Application, **kwargs: Any) -> web.AppRunner:
    """A set-up `web.AppRunner` for `app` with the head timeout and the pending cap of `install_http_limits`."""
    guard = app.get(_GUARD_KEY)
    if guard is not None:
        kwargs = {**guard.limits.runner_kwargs(), **kwargs}
    runner = web.AppRunner(app, **kwargs)
    await runner.setup()
    if guard is not None:
        assert runner.server is not None
        guard.attach(runner.server)
    return runner
