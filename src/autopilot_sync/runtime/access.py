"""Who may use the runtime's producer API: a bearer token from control, or the mode 0600 Unix socket.

Anyone who reaches the TCP listen address could otherwise append to any stream. Two ways in, both decided here:
- **the Unix socket** (`AUTOPILOT_SYNC_RUNTIME_PRODUCER_SOCKET`): created mode 0600, so the operating system admits
  only the runtime's own user; every route is allowed over it (local tools: `runtime demo`, `dead-letters`, `up`);
- **a bearer token** signed by control (checked against control's JWKS, the same OIDC rules as the host, including
  its audience rule: `aud` must name the runtime's database, so a token control signed for another database is
  refused): appends need
  `sync.append` with a `streams` claim covering every stream the request writes; the operator routes
  (`/v1/streams`, `/v1/dead-letters*`) need `sync.admin`.
`/healthz` and `/metrics` stay open (no stream contents, no names). Refusals are typed: 401 `unauthenticated` (no or
a bad token, with `WWW-Authenticate: Bearer`), 403 `forbidden` (a scope is missing) or `forbidden_stream`.
"""

from __future__ import annotations

import enum
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from autopilot_sync.auth.claims import check_audience, check_claims, parse_unverified
from autopilot_sync.auth.errors import TokenError
from autopilot_sync.auth.oidc import OidcVerifier
from autopilot_sync.contract.errors import CodedError
from autopilot_sync.contract.scopes import Scope, scopes_of, stream_allowed

log = logging.getLogger(__name__)

#: Routes anyone may call: liveness and Prometheus.
PUBLIC_PATHS = frozenset({"/healthz", "/metrics"})
#: Longest bearer token read; control's tokens are well under 4 KiB.
MAX_TOKEN_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class Producer:
    """Who is calling: `claims` of a verified token, or None for the Unix socket (the runtime's own user)."""

    claims: Mapping[str, Any] | None

    def may(self, scope: Scope) -> bool:
        """Whether this caller holds `scope` (the socket holds every scope)."""
        return self.claims is None or scope.value in scopes_of(self.claims)

    def covers(self, stream_id: str) -> bool:
        """Whether this caller may write `stream_id` (the socket may write every stream)."""
        return self.claims is None or stream_allowed(self.claims, stream_id)


class AccessErrorCode(enum.Enum):
    """Why the producer API refuses a caller (the JSON `error` field); each code has one HTTP status."""

    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    FORBIDDEN_STREAM = "forbidden_stream"

    @property
    def status(self) -> int:
        """401 for no or a bad token (the client should authenticate), 403 for a token that lacks a right."""
        return 401 if self is AccessErrorCode.UNAUTHENTICATED else 403


class AccessDeniedError(CodedError[AccessErrorCode]):
    """A refusal on its way out as `{"error", "message"}` with the code's status."""

    @property
    def status(self) -> int:
        """The HTTP status of the answer."""
        return self.code.status

    def response(self) -> web.Response:
        """The JSON answer (401 carries the scheme to use)."""
        headers = {"WWW-Authenticate": 'Bearer realm="autopilot-sync-runtime"'} if self.status == 401 else None
        body = {"error": self.code.value, "message": self.message}
        return web.json_response(body, status=self.status, headers=headers)


class ProducerAccess:
    """Verifies callers: tokens from the control service at `issuer` for `database`, or any request over the Unix
    socket."""

    def __init__(self, issuer: str, database: str, verifier: OidcVerifier | None = None) -> None:
        self.issuer = issuer
        #: The audience a token must name (the host's rule: the database the runtime publishes to).
        self.database = database
        self.verifier = verifier or OidcVerifier([issuer])

    async def close(self) -> None:
        """Close the JWKS client."""
        await self.verifier.close()

    async def producer(self, request: web.Request) -> Producer:
        """The verified caller of `request`, or `AccessDeniedError` (401)."""
        if _over_unix_socket(request):
            return Producer(None)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AccessDeniedError(
                AccessErrorCode.UNAUTHENTICATED,
                "send Authorization: Bearer <token from control> or use the producer socket",
            )
        token = token.strip()
        if len(token) > MAX_TOKEN_BYTES:
            raise AccessDeniedError(AccessErrorCode.UNAUTHENTICATED, f"the token is over {MAX_TOKEN_BYTES} bytes")
        try:
            jose_header, claims = parse_unverified(token)
            check_claims(claims, time.time())
            if claims.get("iss") != self.issuer:
                raise AccessDeniedError(AccessErrorCode.UNAUTHENTICATED, f"the token was not issued by {self.issuer}")
            check_audience(claims, self.database)
            await self.verifier.verify_signature(token, self.issuer, jose_header)
        except TokenError as exc:
            raise AccessDeniedError(AccessErrorCode.UNAUTHENTICATED, str(exc)) from None
        except RecursionError:
            raise AccessDeniedError(AccessErrorCode.UNAUTHENTICATED, "the token is malformed") from None
        return Producer(claims)


PRODUCER_KEY = web.AppKey("runtime_producer_access", ProducerAccess)
CALLER_KEY = web.RequestKey("runtime_producer", Producer)


def _over_unix_socket(request: web.Request) -> bool:
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    return sock is not None and sock.family == socket.AF_UNIX


def require(producer: Producer, scope: Scope) -> None:
    """403 `forbidden` unless the caller holds `scope`."""
    if not producer.may(scope):
        raise AccessDeniedError(AccessErrorCode.FORBIDDEN, f"this route needs scope {scope.value}")


def require_streams(producer: Producer, stream_ids: Iterable[str]) -> None:
    """`sync.append` and a `streams` claim covering every stream (403 `forbidden` / `forbidden_stream`)."""
    require(producer, Scope.APPEND)
    for stream_id in stream_ids:
        if not producer.covers(stream_id):
            raise AccessDeniedError(AccessErrorCode.FORBIDDEN_STREAM, f"the token does not cover stream {stream_id}")


@web.middleware
async def access_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Authenticate every non-public route; handlers find the caller with `producer_of`.

    A path no route matches is answered 404 (or 405) as it is, before authentication: which routes exist is public
    (docs/runtime.md), and a legacy sync route must read as absent, not as protected.
    """
    if request.path in PUBLIC_PATHS or request.match_info.http_exception is not None:
        return await handler(request)
    try:
        request[CALLER_KEY] = await request.app[PRODUCER_KEY].producer(request)
        return await handler(request)
    except AccessDeniedError as denied:
        return denied.response()


def producer_of(request: web.Request) -> Producer:
    """The caller the middleware verified."""
    return request[CALLER_KEY]


def producer_session(socket_path: Path | None = None, **kwargs: Any) -> aiohttp.ClientSession:
    """An HTTP client for the producer API: over the Unix socket when given (URLs keep their host and port)."""
    if socket_path is None:
        return aiohttp.ClientSession(**kwargs)
    return aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(socket_path)), **kwargs)
