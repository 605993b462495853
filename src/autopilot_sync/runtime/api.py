"""The runtime's HTTP API for producers and operators (aiohttp routes; the contract is in docs/runtime.md).

An append answers 200 only after its events and outbox rows are committed to SQLite: the seqs in the answer are a
promise that the events will reach the host in that order. Every refusal is `{"error": code, "message": text}`
with a stable code, so producers branch on the code and never on the prose.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from autopilot_sync.contract.scopes import Scope
from autopilot_sync.runtime.access import (
    PRODUCER_KEY,
    ProducerAccess,
    access_middleware,
    producer_of,
    require,
    require_streams,
)
from autopilot_sync.runtime.health import RuntimeHealth
from autopilot_sync.runtime.metrics import METRICS_CONTENT_TYPE, RuntimeMetrics, stream_family
from autopilot_sync.runtime.outbox import AppendResult, DeadLetter
from autopilot_sync.runtime.store import RuntimeStore, now_us
from autopilot_sync.runtime.streams import (
    InputErrorCode,
    InvalidInputError,
    NewEvent,
    check_id,
    run_event,
    worker_snapshot,
)

STORE_KEY = web.AppKey("runtime_store", RuntimeStore)
METRICS_KEY = web.AppKey("runtime_metrics", RuntimeMetrics)
HEALTH_KEY = web.AppKey("runtime_health", RuntimeHealth)

#: The header a producer may send instead of a `request_id` field.
REQUEST_ID_HEADER = "Idempotency-Key"
#: Most events one run append may carry.
MAX_EVENTS_PER_REQUEST = 1000
#: Largest request body accepted.
MAX_BODY_BYTES = 4 * 1024 * 1024

_STATUS = {InputErrorCode.REQUEST_ID_CONFLICT: 409, InputErrorCode.PAYLOAD_TOO_LARGE: 413}


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


def _refusal(exc: InvalidInputError) -> web.Response:
    return _error(_STATUS.get(exc.code, 400), exc.code.value, exc.message)


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json(loads=lambda text: json.loads(text, parse_constant=_no_constant))
    except RecursionError:
        raise InvalidInputError(InputErrorCode.INVALID_JSON, "the body nests too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError(InputErrorCode.INVALID_JSON, f"the body is not JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise InvalidInputError(InputErrorCode.INVALID_JSON, "the body must be a JSON object")
    return body


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _request_id(request: web.Request, body: dict[str, Any]) -> str | None:
    value = body.get("request_id", request.headers.get(REQUEST_ID_HEADER))
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError(InputErrorCode.INVALID_REQUEST_ID, "request_id must be a string")
    return value


def _appended_body(result: AppendResult) -> dict[str, Any]:
    return {
        "appended": [{"stream_id": item.stream_id, "seq": item.seq} for item in result.events],
        "replayed": result.replayed,
    }


async def _append(request: web.Request, events: list[NewEvent], request_id: str | None) -> web.Response:
    require_streams(producer_of(request), dict.fromkeys(event.stream_id for event in events))
    store = request.app[STORE_KEY]
    metrics = request.app[METRICS_KEY]
    result = await store.append(events, request_id)
    if not result.replayed:
        for item in result.events:
            metrics.appended.labels(family=stream_family(item.stream_id)).inc()
    return web.json_response(_appended_body(result))


async def append_run_events(request: web.Request) -> web.Response:
    """`POST /v1/runs/{run_id}/events`: `{"events": [{"kind", "data"}...]}` or one `{"kind", "data"}`."""
    try:
        run_id = check_id("run_id", request.match_info["run_id"])
        body = await _json_object(request)
        items = body.get("events", [body] if "kind" in body else None)
        if not isinstance(items, list) or not items:
            raise InvalidInputError(
                InputErrorCode.INVALID_BODY, "expected {'kind', 'data'} or {'events': [{'kind', 'data'}, ...]}"
            )
        if len(items) > MAX_EVENTS_PER_REQUEST:
            raise InvalidInputError(
                InputErrorCode.TOO_MANY_EVENTS, f"{len(items)} events, limit {MAX_EVENTS_PER_REQUEST}"
            )
        events = []
        for item in items:
            if not isinstance(item, dict):
                raise InvalidInputError(InputErrorCode.INVALID_BODY, "each event is an object {'kind', 'data'}")
            events.append(run_event(run_id, item.get("kind"), item.get("data", {})))
        return await _append(request, events, _request_id(request, body))
    except InvalidInputError as exc:
        return _refusal(exc)


async def append_worker_snapshot(request: web.Request) -> web.Response:
    """`POST /v1/workers/{worker_id}/lifecycle`: `{"user_id", "state", "detail"}` to the worker and fleet streams."""
    try:
        worker_id = check_id("worker_id", request.match_info["worker_id"])
        body = await _json_object(request)
        user_id = check_id("user_id", body.get("user_id"))
        events = worker_snapshot(worker_id, user_id, body.get("state"), body.get("detail", {}))
        return await _append(request, events, _request_id(request, body))
    except InvalidInputError as exc:
        return _refusal(exc)


async def list_streams(request: web.Request) -> web.Response:
    """`GET /v1/streams`: each stream's head, published seq, backlog and whether it is dead-lettered."""
    require(producer_of(request), Scope.ADMIN)
    backlog = await request.app[STORE_KEY].backlog()
    now = now_us()
    return web.json_response(
        {
            "streams": [
                {
                    "stream_id": stream.stream_id,
                    "head_seq": stream.head_seq,
                    "published_seq": stream.published_seq,
                    "pending": stream.pending,
                    "oldest_age_seconds": None
                    if stream.oldest_appended_us is None
                    else max(0, now - stream.oldest_appended_us) / 1e6,
                    "blocked": stream.blocked,
                }
                for stream in backlog
            ]
        }
    )


def dead_letter_json(dead: DeadLetter) -> dict[str, Any]:
    """A dead letter as the API and the operator command show it."""
    return {
        "id": dead.id,
        "stream_id": dead.stream_id,
        "seq": dead.seq,
        "retry_class": dead.retry_class,
        "reason": dead.reason,
        "dead_at_us": dead.dead_at_us,
        "replayed_at_us": dead.replayed_at_us,
    }


async def list_dead_letters(request: web.Request) -> web.Response:
    """`GET /v1/dead-letters[?all=1]`: open dead letters (all, with `all=1`)."""
    require(producer_of(request), Scope.ADMIN)
    rows = await request.app[STORE_KEY].dead_letters(include_replayed=request.query.get("all") in {"1", "true"})
    return web.json_response({"dead_letters": [dead_letter_json(dead) for dead in rows]})


async def replay_dead_letters(request: web.Request) -> web.Response:
    """`POST /v1/dead-letters/replay` `{"stream_id": ...}` (or `{}` for all): publish those streams again."""
    require(producer_of(request), Scope.ADMIN)
    try:
        body = await _json_object(request) if request.can_read_body else {}
    except InvalidInputError as exc:
        return _refusal(exc)
    stream_id = body.get("stream_id")
    if stream_id is not None and not isinstance(stream_id, str):
        return _error(400, "invalid_body", "stream_id must be a string")
    rows = await request.app[STORE_KEY].replay(stream_id)
    return web.json_response({"replayed": [dead_letter_json(dead) for dead in rows]})


async def metrics(request: web.Request) -> web.Response:
    """`GET /metrics`: Prometheus text, with the outbox gauges read from disk now."""
    registry = request.app[METRICS_KEY]
    registry.observe_backlog(await request.app[STORE_KEY].backlog(), now_us())
    response = web.Response(body=registry.render())
    response.headers["Content-Type"] = METRICS_CONTENT_TYPE
    return response


async def healthz(request: web.Request) -> web.Response:
    """`GET /healthz`: 200 while the process serves (and accepts appends); `status` is `degraded` while a dependency
    is down, with the reason per dependency (runtime/health.py)."""
    return web.json_response(dict(request.app[HEALTH_KEY].body()))


def build_app(
    store: RuntimeStore, runtime_metrics: RuntimeMetrics, access: ProducerAccess, health: RuntimeHealth | None = None
) -> web.Application:
    """The aiohttp application with every route of the runtime, each but /healthz and /metrics behind `access`."""
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[access_middleware])
    app[PRODUCER_KEY] = access
    app[HEALTH_KEY] = health or RuntimeHealth(runtime_metrics)
    app[STORE_KEY] = store
    app[METRICS_KEY] = runtime_metrics
    app.router.add_post("/v1/runs/{run_id}/events", append_run_events)
    app.router.add_post("/v1/workers/{worker_id}/lifecycle", append_worker_snapshot)
    app.router.add_get("/v1/streams", list_streams)
    app.router.add_get("/v1/dead-letters", list_dead_letters)
    app.router.add_post("/v1/dead-letters/replay", replay_dead_letters)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app
