"""The publish routes, after SpacetimeDB's `crates/client-api/src/routes/database.rs`: `POST /v1/database`,
`PUT /v1/database/:name_or_identity` and `DELETE /v1/database/:name_or_identity`.

The body names the module (ADR 0005): a JavaScript bundle as `autopilot-sync build` makes it (`host_type=Js`, the
bytes as the body, as `spacetime publish` sends a TypeScript module), or a Python module already installed on the
host as JSON `{"python_module": "dotted.path"}` (never source). Query parameters as SpacetimeDB's
`PublishDatabaseQueryParams`: `clear` (delete the data: `spacetime publish --delete-data`), `host_type`, `policy`
(`Compatible`, or `BreakClients` with a `token`). Answers: 200 with SpacetimeDB's `PublishResult::Success` JSON;
400 with the readable diff when the change needs `clear`; 401 without a token; 403 for an identity that may not
create, update or delete; 404 for a name this host does not serve (it serves one database); 409 for
`POST /v1/database` when the host already serves its database.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from aiohttp import web

from autopilot_sync.host.engine import HostEngine
from autopilot_sync.host.http_api import (
    _IDENTITY_HEX,
    ENGINE_KEY,
    SERVING_KEY,
    Authenticated,
    authenticate,
    read_body,
)
from autopilot_sync.host.logs_route import MODULE_LOG_KEY
from autopilot_sync.host.publish import (
    ModulePublisher,
    ModuleSource,
    PublishRefusedError,
    PublishResult,
    bundle_source,
)
from autopilot_sync.spacetime.values import Identity

PUBLISHER_KEY = web.AppKey("autopilot_sync.host.publisher", ModulePublisher)
CREATORS_KEY = web.AppKey("autopilot_sync.host.create_identities", frozenset)

_HOST_TYPES = {"wasm": "Wasm", "js": "Js"}
_POLICIES = ("Compatible", "BreakClients")
#: A Python publish body only names a module: anything longer is refused before it is parsed.
MAX_PYTHON_BODY_BYTES = 1024
#: SpacetimeDB's text for `policy=BreakClients` without a token (`schema_migration_policy`).
MISSING_TOKEN = "Migration policy is set to `BreakClients`, but no migration token was provided."


def _answer(status: int, message: str, auth: Authenticated | None = None) -> web.Response:
    return web.Response(status=status, text=message, headers=auth.identity_headers() if auth else None)


def _database_identity(engine: HostEngine) -> str:
    """The database's identity hex (the engine's, when it has one; else derived from its name, stable)."""
    own: Identity | None = getattr(engine, "database_identity", None)
    if own is not None:
        return own.hex
    return hashlib.sha256(f"autopilot-sync database {engine.database_name}".encode()).hexdigest()


def _flag(request: web.Request, name: str) -> bool:
    """A boolean query parameter as serde reads it (`true`/`false`; absent is false)."""
    value = request.query.get(name, "false").lower()
    if value not in ("true", "false"):
        raise web.HTTPBadRequest(
            text=f"Failed to deserialize query string: {name}: provided string was not `true` or `false`"
        )
    return value == "true"


def _break_clients_token(request: web.Request) -> str | None:
    """The migration token of `policy=BreakClients` (400 with SpacetimeDB's text when missing), else None."""
    policy = request.query.get("policy", "Compatible")
    if policy not in _POLICIES:
        raise web.HTTPBadRequest(
            text=f"Failed to deserialize query string: policy: unknown variant `{policy}`, expected one of "
            "`Compatible`, `BreakClients`"
        )
    if policy == "Compatible":
        return None
    token = request.query.get("token")
    if not token:
        raise web.HTTPBadRequest(text=MISSING_TOKEN)
    return token


async def _source(request: web.Request, auth: Authenticated) -> tuple[ModuleSource, bytes | None]:
    """The module the body names: a JavaScript bundle (`host_type=Js`) or `{"python_module": ...}` JSON."""
    host_type = request.query.get("host_type", "Wasm")
    if host_type.lower() not in _HOST_TYPES:
        raise web.HTTPBadRequest(
            text="Failed to deserialize query string: host_type: "
            f"unknown variant `{host_type}`, expected `Wasm` or `Js`"
        )
    body = await read_body(request, auth.identity_headers())
    if _HOST_TYPES[host_type.lower()] == "Js":
        if not body:
            raise web.HTTPBadRequest(text="empty module: send the bundle `autopilot-sync build` wrote as the body")
        return bundle_source(body), body
    if request.content_type != "application/json":
        raise web.HTTPBadRequest(
            text="this host runs TypeScript bundles (host_type=Js, the bundle as the body) or a Python module "
            'installed on it (Content-Type: application/json, body {"python_module": "dotted.path"}); '
            "WebAssembly modules are not supported"
        )
    shape = 'the body must be JSON {"python_module": "dotted.path"} naming a module installed on the host'
    if len(body) > MAX_PYTHON_BODY_BYTES:
        raise web.HTTPBadRequest(text=f"{shape} (at most {MAX_PYTHON_BODY_BYTES} bytes)")
    try:
        value: Any = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise web.HTTPBadRequest(text=shape) from None
    path = value["python_module"] if isinstance(value, dict) and set(value) == {"python_module"} else None
    if not isinstance(path, str):
        raise web.HTTPBadRequest(text=shape)
    try:
        return ModuleSource.python(path), None
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


def _success(engine: HostEngine, result: PublishResult) -> web.Response:
    """SpacetimeDB's `PublishResult::Success`, plus what changed (extra fields its clients ignore)."""
    body = {
        "Success": {
            "domain": engine.database_name,
            "database_identity": _database_identity(engine),
            "op": result.op.value,
        },
        "cleared": result.cleared,
        "disconnected_clients": result.disconnected,
        "changes": [change.to_json() for change in result.diff.changes],
    }
    return web.json_response(body)


def _owner_only(engine: HostEngine, auth: Authenticated, action: str) -> None:
    if auth.identity != engine.owner_identity:
        raise web.HTTPForbidden(
            text=f"{auth.identity.hex} may not {action} database `{engine.database_name}`: only its owner may",
            headers=auth.identity_headers(),
        )


def _this_database(engine: HostEngine, name: str, auth: Authenticated) -> None:
    """404 unless `name` is this host's database (by name or identity): a host serves one database."""
    if name == engine.database_name or (
        _IDENTITY_HEX.fullmatch(name) and name.lower().removeprefix("0x") == _database_identity(engine)
    ):
        return
    raise web.HTTPNotFound(
        text=f"`{name}` not found: this host serves one database, `{engine.database_name}`",
        headers=auth.identity_headers(),
    )


async def _run(publisher: ModulePublisher, source: ModuleSource, bundle: bytes | None, **kwargs: Any) -> PublishResult:
    try:
        return await publisher.publish(source, bundle, **kwargs)
    except PublishRefusedError as exc:
        raise web.HTTPBadRequest(text=exc.message) from None


async def create_database(request: web.Request) -> web.Response:
    """`POST /v1/database`: create the host's database when it has none yet (identities allowed to create only)."""
    auth = await authenticate(request, required=True)
    engine, publisher = request.app[ENGINE_KEY], request.app[PUBLISHER_KEY]
    if publisher.published:
        return _answer(
            409,
            f"this host serves one database, `{engine.database_name}`, which exists: "
            f"publish to it with PUT /v1/database/{engine.database_name}",
            auth,
        )
    _may_create(request, engine, auth)
    _break_clients_token(request)
    source, bundle = await _source(request, auth)
    result = await _run(publisher, source, bundle, clear=_flag(request, "clear"), owner_identity=auth.identity.hex)
    return _success(engine, result)


def _may_create(request: web.Request, engine: HostEngine, auth: Authenticated) -> None:
    allowed = request.app[CREATORS_KEY] or frozenset({engine.owner_identity.hex})
    if auth.identity.hex not in allowed:
        raise web.HTTPForbidden(
            text=f"{auth.identity.hex} may not create a database on this host "
            "(AUTOPILOT_SYNC_HOST_CREATE_IDENTITIES lists who may; by default only the owner)",
            headers=auth.identity_headers(),
        )


async def publish_database(request: web.Request) -> web.Response:
    """`PUT /v1/database/:name`: update this host's database (its owner only), or create it when there is none."""
    auth = await authenticate(request, required=True)
    engine, publisher = request.app[ENGINE_KEY], request.app[PUBLISHER_KEY]
    _this_database(engine, request.match_info["name"], auth)
    clear = _flag(request, "clear")
    if publisher.published:
        _owner_only(engine, auth, "update")
    else:
        _may_create(request, engine, auth)
    token = _break_clients_token(request)
    source, bundle = await _source(request, auth)
    owner = None if publisher.published else auth.identity.hex
    result = await _run(publisher, source, bundle, clear=clear, owner_identity=owner, break_clients_token=token)
    return _success(engine, result)


async def pre_publish(request: web.Request) -> web.Response:
    """`POST /v1/database/:name/pre_publish`: the migration plan a publish of the body would apply (owner only),
    with the token `policy=BreakClients` needs when the plan breaks clients (SpacetimeDB's `PrePublishResult`)."""
    auth = await authenticate(request, required=True)
    engine, publisher = request.app[ENGINE_KEY], request.app[PUBLISHER_KEY]
    _this_database(engine, request.match_info["name"], auth)
    if not publisher.published:
        raise web.HTTPNotFound(text="No such database.", headers=auth.identity_headers())
    _owner_only(engine, auth, "plan a migration of")
    source, bundle = await _source(request, auth)
    try:
        plan = await publisher.plan(source, bundle)
    except PublishRefusedError as exc:
        raise web.HTTPBadRequest(text=exc.message) from None
    return web.json_response(plan, headers=auth.identity_headers())


async def delete_database(request: web.Request) -> web.Response:
    """`DELETE /v1/database/:name`: delete the data; the host then serves no database until the next publish.

    As SpacetimeDB's `delete_database`, a database that does not exist answers 200 with nothing done.
    """
    auth = await authenticate(request, required=True)
    engine, publisher = request.app[ENGINE_KEY], request.app[PUBLISHER_KEY]
    _this_database(engine, request.match_info["name"], auth)
    if not publisher.published:
        return _answer(200, "", auth)
    _owner_only(engine, auth, "delete")
    await publisher.delete()
    module_log = request.app.get(MODULE_LOG_KEY)
    if module_log is not None:  # the database's logs go with it, as on SpacetimeDB
        module_log.clear()
    return _answer(200, "", auth)


def add_publish_routes(app: web.Application, publisher: ModulePublisher, create_identities: frozenset[str]) -> None:
    """Mount the publish routes (after `add_http_routes`, whose authentication and body limit they share)."""
    app[PUBLISHER_KEY] = publisher
    app[SERVING_KEY] = publisher
    app[CREATORS_KEY] = create_identities
    app.router.add_post("/v1/database", create_database)
    app.router.add_put("/v1/database/{name}", publish_database)
    app.router.add_delete("/v1/database/{name}", delete_database)
    app.router.add_post("/v1/database/{name}/pre_publish", pre_publish)
