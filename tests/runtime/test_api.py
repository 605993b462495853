"""The producer API over a real socket (aiohttp test server): validation codes, acknowledged seqs, idempotent
requests, operator routes and metrics. No publisher runs here: acknowledgement depends only on the outbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from autopilot_sync.runtime.access import Producer, ProducerAccess
from autopilot_sync.runtime.api import build_app
from autopilot_sync.runtime.metrics import RuntimeMetrics
from autopilot_sync.runtime.store import RuntimeStore


class TrustEveryCallerDouble(ProducerAccess):
    """Test double: every caller is treated as if it came over the producer socket (auth has its own tests)."""

    async def producer(self, request: web.Request) -> Producer:
        return Producer(None)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[object, object]]:
    store = RuntimeStore(tmp_path)
    test_client: TestClient[object, object] = TestClient(
        TestServer(build_app(store, RuntimeMetrics(), TrustEveryCallerDouble("http://control.invalid", "test-db")))
    )
    await test_client.start_server()
    yield test_client
    await test_client.close()
    await store.close()


async def test_run_events_are_acknowledged_with_gap_free_seqs(client: TestClient[object, object]) -> None:
    one = await client.post("/v1/runs/r-1/events", json={"kind": "run.started", "data": {"model": "m"}})
    assert one.status == 200
    assert await one.json() == {"appended": [{"stream_id": "runtime.run.r-1.events", "seq": 1}], "replayed": False}
    many = await client.post(
        "/v1/runs/r-1/events",
        json={"events": [{"kind": "run.message.delta", "data": {"delta": "Hi"}}, {"kind": "run.finished"}]},
    )
    assert [item["seq"] for item in (await many.json())["appended"]] == [2, 3]


async def test_worker_snapshot_goes_to_worker_and_fleet_streams(client: TestClient[object, object]) -> None:
    response = await client.post("/v1/workers/w-1/lifecycle", json={"user_id": "u-1", "state": "worker.running"})
    assert (await response.json())["appended"] == [
        {"stream_id": "runtime.worker.w-1.lifecycle", "seq": 1},
        {"stream_id": "runtime.fleet.user.u-1.workers", "seq": 1},
    ]


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v1/runs/r-1/events", {"kind": "run.exploded"}, 400, "invalid_kind"),
        ("/v1/runs/bad.id/events", {"kind": "run.started"}, 400, "invalid_run_id"),
        ("/v1/runs/r-1/events", {"events": []}, 400, "invalid_body"),
        ("/v1/workers/w-1/lifecycle", {"user_id": "u-1", "state": "sleeping"}, 400, "invalid_kind"),
        ("/v1/workers/w-1/lifecycle", {"state": "running"}, 400, "invalid_user_id"),
        ("/v1/runs/r-1/events", {"kind": "run.started", "data": "x" * 300000}, 413, "payload_too_large"),
        ("/v1/runs/r-1/events", {"kind": "run.started", "data": {"text": "\ud800"}}, 400, "invalid_payload"),
    ],
)
async def test_invalid_requests_are_refused_with_a_code(
    client: TestClient[object, object], path: str, body: dict[str, object], status: int, code: str
) -> None:
    response = await client.post(path, json=body)
    assert response.status == status
    assert (await response.json())["error"] == code


async def test_non_json_body_is_refused(client: TestClient[object, object]) -> None:
    response = await client.post("/v1/runs/r-1/events", data=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status == 400 and (await response.json())["error"] == "invalid_json"


async def test_a_retried_request_id_returns_the_same_seqs(client: TestClient[object, object]) -> None:
    body = {"kind": "run.started", "data": {}, "request_id": "req-7"}
    first = await (await client.post("/v1/runs/r-2/events", json=body)).json()
    second = await (await client.post("/v1/runs/r-2/events", json=body)).json()
    assert second["appended"] == first["appended"] and second["replayed"] is True
    header = await client.post(
        "/v1/runs/r-2/events", json={"kind": "run.finished"}, headers={"Idempotency-Key": "req-7"}
    )
    assert header.status == 409 and (await header.json())["error"] == "request_id_conflict"


async def test_streams_dead_letters_and_metrics_routes(client: TestClient[object, object]) -> None:
    await client.post("/v1/runs/r-3/events", json={"kind": "run.started"})
    streams = (await (await client.get("/v1/streams")).json())["streams"]
    assert streams[0]["stream_id"] == "runtime.run.r-3.events" and streams[0]["pending"] == 1
    assert (await (await client.get("/v1/dead-letters")).json()) == {"dead_letters": []}
    assert (await (await client.post("/v1/dead-letters/replay", json={})).json()) == {"replayed": []}
    text = await (await client.get("/metrics")).text()
    assert 'autopilot_sync_runtime_events_appended_total{family="run"} 1.0' in text
    assert 'autopilot_sync_runtime_outbox_depth{stream_id="runtime.run.r-3.events"} 1.0' in text


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"kind": "run.started", "data": ' + b"[" * 5000 + b"]" * 5000 + b"}", "invalid_json"),
        (b'{"kind": "run.started", "data": ' + b"[" * 100 + b"]" * 100 + b"}", "invalid_payload"),
        (b'{"kind": "run.started", "data": ' + b"9" * 5000 + b"}", "invalid_json"),
    ],
    ids=["nested 5,000 deep", "nested past the module's 64", "a 5,000-digit integer"],
)
async def test_bodies_no_reader_could_parse_are_typed_400s(
    client: TestClient[object, object], body: bytes, code: str
) -> None:
    response = await client.post("/v1/runs/r-9/events", data=body, headers={"Content-Type": "application/json"})
    assert response.status == 400 and (await response.json())["error"] == code
    assert "Traceback" not in await response.text()
