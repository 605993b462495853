"""The control service's HTTP routes (aiohttp): a thin adapter around `ControlService`.

`POST /api/sync/token` mints; `GET /.well-known/openid-configuration` and `GET /.well-known/jwks.json` let hosts
verify what it minted; `GET /metrics` is for Prometheus. Every refusal is JSON `{"error", "message"}` with the status
of its code (`errors.py`); only this module knows about HTTP.
"""

from __future__ import annotations

from aiohttp import web

from autopilot_sync.control.errors import ControlError, ControlErrorCode
from autopilot_sync.control.metrics import METRICS_CONTENT_TYPE
from autopilot_sync.control.request import MAX_BODY_BYTES
from autopilot_sync.control.service import DISCOVERY_PATH, JWKS_PATH, TOKEN_PATH, ControlService

SERVICE_KEY = web.AppKey("control_service", ControlService)
#: The JWKS and discovery documents may be cached briefly; hosts refetch on an unknown `kid` anyway.
_DOCUMENT_CACHE = "public, max-age=60"


def _refusal(error: ControlError) -> web.Response:
    headers = {"Cache-Control": "no-store"}
    if error.code.status == 401:
        headers["WWW-Authenticate"] = 'Nostr realm="autopilot-sync"'
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    return web.json_response(error.body(), status=error.code.status, headers=headers)


async def _read_body(request: web.Request) -> bytes:
    """The body, refusing one over `MAX_BODY_BYTES` without buffering it."""
    too_large = ControlError(ControlErrorCode.BODY_TOO_LARGE, f"the body is over {MAX_BODY_BYTES} bytes")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(MAX_BODY_BYTES + 1 - size)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise too_large


def _signed_url(service: ControlService, request: web.Request) -> str:
    """The URL the client must have signed: the public URL of the route plus the query string exactly as sent.

    Built from `public_url`, never from the Host header or the socket, so a proof made for another deployment (or
    forwarded through a proxy under another name) does not verify here.
    """
    query = request.rel_url.raw_query_string
    return service.config.token_url + (f"?{query}" if query else "")


async def issue_token(request: web.Request) -> web.Response:
    """`POST /api/sync/token`: NIP-98 proof + token request in, signed session token out."""
    service = request.app[SERVICE_KEY]
    try:
        body = await _read_body(request)
    except ControlError as exc:
        service.refuse(exc)
        return _refusal(exc)
    try:
        issued = service.issue(request.headers.get("Authorization"), _signed_url(service, request), "POST", body)
    except ControlError as exc:
        return _refusal(exc)
    return web.json_response(issued.response(), headers={"Cache-Control": "no-store"})


async def discovery(request: web.Request) -> web.Response:
    """`GET /.well-known/openid-configuration`."""
    document = request.app[SERVICE_KEY].discovery()
    return web.json_response(document, headers={"Cache-Control": _DOCUMENT_CACHE})


async def jwks(request: web.Request) -> web.Response:
    """`GET /.well-known/jwks.json`: the active, staged and still-needed retired public keys."""
    document = request.app[SERVICE_KEY].jwks()
    return web.json_response(document, headers={"Cache-Control": _DOCUMENT_CACHE})


async def healthz(request: web.Request) -> web.Response:
    """`GET /healthz`: 200 while the service answers (it has no dependency: its keys are local files)."""
    del request
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    """`GET /metrics`: Prometheus text exposition of this service's registry."""
    body = request.app[SERVICE_KEY].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


def build_app(service: ControlService) -> web.Application:
    """The aiohttp application serving one control service."""
    app = web.Application(client_max_size=MAX_BODY_BYTES + 1)
    app[SERVICE_KEY] = service
    app.router.add_post(TOKEN_PATH, issue_token)
    app.router.add_get(DISCOVERY_PATH, discovery)
    app.router.add_get(JWKS_PATH, jwks)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app
