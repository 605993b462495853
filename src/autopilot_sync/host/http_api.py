"""The host's HTTP API under `/v1`, with the status codes and bodies of SpacetimeDB's `client-api` routes.

Routes (see `docs/host-http.md`): identity minting, the public key, short-lived WebSocket tokens, ping, reducer calls
with JSON arguments, SQL, and the module schema. Everything under `/v1/database/:name` authenticates like the real
host's `anon_auth_middleware`: a valid token (Bearer header, else `?token=`) is the caller; no token mints an anonymous
identity; either way the response carries `spacetime-identity` and `spacetime-identity-token` headers. A token that
fails verification is a 401 before anything else happens.

No answer leaves before what it reveals is durable: a reducer call's response waits for every commit its outcome
observed (`CallOutcome.offset`), `/sql` for every commit its rows may include.

A reducer call runs inside a short connection, as on the real host: `client_connected` (403 if it refuses), the
reducer, then `client_disconnected` whatever happened, shielded from the HTTP request being abandoned midway.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass

from aiohttp import web

from autopilot_sync.auth.errors import TokenError
from autopilot_sync.host.auth.tokens import TokenService, VerifiedToken
from autopilot_sync.host.call_outcome import CallOutcome, CallStatus
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.commitlog import StorageFailedError
from autopilot_sync.host.engine import ConnectionRejectedError, HostEngine, StorageUnavailableError, new_connection_id
from autopilot_sync.host.procedure_call import ProcedureStatus
from autopilot_sync.host.sql import SqlError, sql_json_result
from autopilot_sync.spacetime import bsatn, moduledef
from autopilot_sync.spacetime.sats_json import SatsJsonError, decode_args, to_json
from autopilot_sync.spacetime.values import ConnectionId, Identity

ENGINE_KEY = web.AppKey("autopilot_sync.host.engine", HostEngine)
#: Whether the host serves a database now (False: started with no module, or after DELETE); absent = always.
SERVING_KEY = web.AppKey("autopilot_sync.host.serving", object)
TOKENS_KEY = web.AppKey("autopilot_sync.host.tokens", TokenService)
MAX_BODY_KEY = web.AppKey("autopilot_sync.host.max_body_bytes", int)

#: Default request body limit; the host passes its configured `max_message_bytes` (the WebSocket limit: a reducer
#: call is the same payload whichever way it arrives).
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
#: Status the real host uses for a reducer that failed (Cloudflare's "origin error").
STATUS_REDUCER_FAILED = 530

_DATABASE_NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
_IDENTITY_HEX = re.compile(r"(0x)?[0-9a-fA-F]{64}")
_JSON_TYPES = ("application/json",)


@dataclass(frozen=True, slots=True)
class Authenticated:
    """Who a request is from: the verified (or freshly minted) token, and whether it was minted for this request.

    The WebSocket route needs the token itself (it goes into `InitialConnection`), which is why this is returned
    rather than a bare `Caller`.
    """

    token: VerifiedToken
    minted: bool

    @property
    def identity(self) -> Identity:
        """The caller's identity."""
        return self.token.identity

    def caller(self, connection_id: ConnectionId | None = None) -> Caller:
        """The `Caller` reducers see, for one connection."""
        return Caller(self.token.identity, connection_id, dict(self.token.claims))

    def identity_headers(self) -> dict[str, str]:
        """`spacetime-identity` / `spacetime-identity-token`, as the real host adds to every database response."""
        return {"spacetime-identity": self.token.identity.hex, "spacetime-identity-token": self.token.token}


def _text(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=message, headers=headers)


_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    404: web.HTTPNotFound,
}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.HTTPException:
    """An exception aiohttp turns into a plain-text response (so helpers can bail out from any depth)."""
    return _ERRORS[status](text=message, headers=headers)


def request_token(request: web.Request) -> str | None:
    """The token a request carries: `Authorization: Bearer …` first, else the `token` query parameter.

    Raises HTTP 400 for an `Authorization` header that is not a Bearer token (as the real host does).
    """
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise _error(400, "Authorization is invalid: malformed token")
        return value.strip()
    return request.query.get("token") or None


async def authenticate(request: web.Request, *, required: bool = False) -> Authenticated:
    """Verify the request's token, or (unless `required`) mint an anonymous identity when it has none.

    Raises `web.HTTPUnauthorized` with the reason when the token is refused or missing-but-required; shared with the
    WebSocket route so both paths accept exactly the same tokens.
    """
    tokens = request.app[TOKENS_KEY]
    token = request_token(request)
    if token is None:
        if required:
            raise _error(401, "Authorization required")
        return Authenticated(tokens.mint_anonymous(), minted=True)
    try:
        return Authenticated(await tokens.verify(token), minted=False)
    except TokenError as exc:
        raise _error(401, exc.message) from None


async def read_body(request: web.Request, headers: dict[str, str] | None = None) -> bytes:
    """The request body, refusing (413) anything over the configured limit without reading it all."""
    limit = request.app[MAX_BODY_KEY]
    declared = request.content_length
    if declared is None or declared <= limit:
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = await request.content.read(min(65536, limit + 1 - size))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
    raise web.HTTPRequestEntityTooLarge(
        limit,
        declared or limit + 1,
        text=f"Failed to buffer the request body: length limit of {limit} bytes exceeded",
        headers=headers,
    )


def _resolve_database(engine: HostEngine, name: str) -> str | None:
    """None when `name` denotes this host's database, else the 400/404 message (as `Some(error)`)."""
    if _IDENTITY_HEX.fullmatch(name):
        own: Identity | None = getattr(engine, "database_identity", None)
        if own is not None and Identity.from_hex(name) == own:
            return None
        return "No such database."
    if not _DATABASE_NAME.fullmatch(name):
        return "invalid"
    if name != engine.database_name:
        return f"`{name}` not found"
    return None


async def resolve_database_request(request: web.Request) -> tuple[HostEngine, Authenticated]:
    """Authenticate (401 first, as the real middleware order), then resolve the database (400/404)."""
    auth = await authenticate(request)
    engine = request.app[ENGINE_KEY]
    problem = _resolve_database(engine, request.match_info["name"])
    serving = request.app.get(SERVING_KEY)
    if problem is None and serving is not None and not getattr(serving, "published", True):
        problem = f"`{engine.database_name}` not found"
    if problem == "invalid":
        raise _error(
            400,
            "Invalid URL: database name must be lowercase letters and digits joined by '-', or a 64-digit identity",
            auth.identity_headers(),
        )
    if problem is not None:
        raise _error(404, problem, auth.identity_headers())
    return engine, auth


# ----- /v1/identity -----


async def create_identity(request: web.Request) -> web.Response:
    """`POST /v1/identity`: a fresh identity and its token."""
    minted = request.app[TOKENS_KEY].mint_anonymous()
    return web.json_response({"identity": minted.identity.hex, "token": minted.token})


async def public_key(request: web.Request) -> web.Response:
    """`GET /v1/identity/public-key`: the PEM that verifies host-issued tokens."""
    return web.Response(
        body=request.app[TOKENS_KEY].public_key_pem, headers={"Content-Type": "application/pem-certificate-chain"}
    )


async def websocket_token(request: web.Request) -> web.Response:
    """`POST /v1/identity/websocket-token`: the caller's claims re-signed by the host, valid 60 s at most.

    Never longer than the caller's token: the result expires with it and carries its expiry (`origin_exp`), so
    exchanging the result again cannot extend it (see `tokens.TokenService.resign`).
    """
    auth = await authenticate(request, required=True)
    short = request.app[TOKENS_KEY].resign(auth.token)
    return web.json_response({"token": short.token})


class HostHealth:
    """Whether the host can still accept writes: it turns fail-stop for good once the commit log fails."""

    def __init__(self) -> None:
        self.storage_error: str | None = None

    def storage_failed(self, error: BaseException) -> None:
        """Engine failure listener: remember why (first failure wins)."""
        self.storage_error = self.storage_error or str(error)


HEALTH_KEY = web.AppKey("host_health", HostHealth)


async def healthz(request: web.Request) -> web.Response:
    """`GET /healthz`: 200 `{"status": "ok"}` while the host accepts writes, 503 `failed` once storage failed."""
    health = request.app[HEALTH_KEY]
    database = request.app[ENGINE_KEY].database_name
    if health.storage_error is not None:
        body = {"status": "failed", "database": database, "detail": "storage failed: the host accepts no writes"}
        return web.json_response(body, status=503)
    return web.json_response({"status": "ok", "database": database})


async def ping(request: web.Request) -> web.Response:
    """`GET /v1/ping`: liveness, empty 200."""
    del request
    return web.Response(status=200)


# ----- /v1/database/:name -----


def _is_json(request: web.Request) -> bool | None:
    """None when there is no Content-Type, else whether it is JSON."""
    if "Content-Type" not in request.headers:
        return None
    return request.content_type in _JSON_TYPES


async def call_reducer(request: web.Request) -> web.Response:
    """`POST /v1/database/:name/call/:reducer`: run a reducer with positional JSON arguments."""
    engine, auth = await resolve_database_request(request)
    headers = auth.identity_headers()
    is_json = _is_json(request)
    if is_json is None:
        return _text(400, "Header of type `content-type` was missing", headers)
    if not is_json:
        return _text(415, "Expected request with `Content-Type: application/json`", headers)
    body = await read_body(request, headers)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _text(400, "Request body didn't contain valid UTF-8", headers)
    name = request.match_info["reducer"]
    task = asyncio.ensure_future(_call_in_connection(engine, auth, name, text))
    status, message = await asyncio.shield(task)
    if isinstance(message, _Json):
        return web.Response(status=status, text=message, content_type="application/json", headers=headers)
    return _text(status, message, headers)


async def _call_in_connection(engine: HostEngine, auth: Authenticated, name: str, text: str) -> tuple[int, str]:
    caller = auth.caller(new_connection_id())
    try:
        await engine.connect(caller)
    except StorageUnavailableError as exc:
        return 503, str(exc)
    except ConnectionRejectedError as exc:
        return 403, str(exc)
    try:
        return await _call(engine, caller, name, text)
    finally:
        await engine.disconnect(caller)


async def _call(engine: HostEngine, caller: Caller, name: str, text: str) -> tuple[int, str]:
    reducer = engine.reducer(name)
    if reducer is None:
        procedure = engine.procedure(name)
        if procedure is not None:  # SpacetimeDB's route tries a procedure when no reducer has the name
            return await _call_procedure(engine, caller, procedure, text)
        return 404, f"no such reducer: {name}"
    if reducer.lifecycle is not None:
        return 400, f"can't directly call special {_lifecycle_name(reducer.lifecycle)} lifecycle reducer"
    try:
        args = decode_args(reducer.params, text, engine.module.definition().typespace)  # params may name types
    except SatsJsonError as exc:
        return 400, f"invalid arguments for reducer {name}: {exc}"
    outcome = await engine.call_reducer(name, args, caller)
    return _outcome_response(outcome)


class _Json(str):
    """A response body that is JSON (a procedure's return value), not text."""


async def _call_procedure(
    engine: HostEngine, caller: Caller, procedure: moduledef.ProcedureDef, text: str
) -> tuple[int, str]:
    """A procedure: 200 with its return value as SATS-JSON, as SpacetimeDB answers; its failure is 530, not 500."""
    typespace = engine.module.definition().typespace
    try:
        values = decode_args(procedure.params, text, typespace)
    except SatsJsonError as exc:
        return 400, f"invalid arguments for procedure {procedure.name}: {exc}"
    outcome = await engine.call_procedure(procedure.name, bsatn.encode(procedure.params, values, typespace), caller)
    if outcome.status is ProcedureStatus.RETURNED and outcome.returned is not None:
        value = bsatn.decode(procedure.return_type, outcome.returned, typespace)
        return 200, _Json(json.dumps(to_json(procedure.return_type, value, typespace), separators=(",", ":")))
    if outcome.status is ProcedureStatus.NO_SUCH_PROCEDURE:
        return 404, outcome.error
    if outcome.status is ProcedureStatus.BAD_ARGUMENTS:
        return 400, outcome.error
    return STATUS_REDUCER_FAILED, outcome.error


def _lifecycle_name(lifecycle: moduledef.Lifecycle) -> str:
    return lifecycle.value


def _outcome_response(outcome: CallOutcome) -> tuple[int, str]:
    if outcome.status is CallStatus.COMMITTED:
        return 200, ""
    if outcome.status is CallStatus.NO_SUCH_REDUCER:
        return 404, outcome.message
    if outcome.status in (CallStatus.BAD_ARGUMENTS, CallStatus.LIFECYCLE_REDUCER):
        return 400, outcome.message
    return STATUS_REDUCER_FAILED, outcome.message


async def sql(request: web.Request) -> web.Response:
    """`POST /v1/database/:name/sql`: one read-only query (one-off SQL subset); the owner also sees private tables."""
    engine, auth = await resolve_database_request(request)
    headers = auth.identity_headers()
    body = await read_body(request, headers)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _text(400, "SQL body must be UTF-8 text", headers)
    try:
        reads_everything = engine.reads_everything(auth.identity)
        result = sql_json_result(engine.datastore, text, private_visible=reads_everything, sender=auth.identity)
    except SqlError as exc:
        return _text(400, str(exc), headers)
    try:
        # The rows may include commits not yet on disk: answer only once they are (the one rule for answers).
        await engine.wait_durable_offset(engine.offset)
    except StorageFailedError as exc:
        return _text(503, f"storage failed: {exc}", headers)
    headers["spacetime-execution-duration-micros"] = str(result[0]["total_duration_micros"])
    return web.Response(
        text=json.dumps(result, separators=(",", ":")), content_type="application/json", headers=headers
    )


async def schema(request: web.Request) -> web.Response:
    """`GET /v1/database/:name/schema?version=9|10`: the module as `RawModuleDefV9` or `RawModuleDefV10` SATS-JSON.

    As SpacetimeDB's `schema` handler (`crates/client-api/src/routes/database.rs`): `version` is required and is
    `9` or `10` (its `SchemaVersion` enum); anything else is axum's query rejection, 400 with serde's text.
    """
    engine, auth = await resolve_database_request(request)
    headers = auth.identity_headers()
    version = request.query.get("version")
    if version is None:
        return _text(400, "Failed to deserialize query string: missing field `version`", headers)
    if len(request.query.getall("version")) > 1:
        return _text(400, "Failed to deserialize query string: duplicate field `version`", headers)
    if version not in ("9", "10"):
        return _text(
            400, f"Failed to deserialize query string: unknown variant `{version}`, expected `9` or `10`", headers
        )
    body = moduledef.to_json(engine.module.definition(), int(version))
    return web.Response(text=json.dumps(body, separators=(",", ":")), content_type="application/json", headers=headers)


def add_http_routes(
    app: web.Application, engine: HostEngine, tokens: TokenService, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> None:
    """Mount the `/v1` HTTP API for one database on `app` (the WebSocket route is added separately)."""
    app[ENGINE_KEY] = engine
    app[TOKENS_KEY] = tokens
    app[MAX_BODY_KEY] = max_body_bytes
    app[HEALTH_KEY] = HostHealth()
    engine.add_failure_listener(app[HEALTH_KEY].storage_failed)
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/v1/identity", create_identity)
    app.router.add_get("/v1/identity/public-key", public_key)
    app.router.add_post("/v1/identity/websocket-token", websocket_token)
    app.router.add_get("/v1/ping", ping)
    app.router.add_post("/v1/database/{name}/call/{reducer}", call_reducer)
    app.router.add_post("/v1/database/{name}/sql", sql)
    app.router.add_get("/v1/database/{name}/schema", schema)
