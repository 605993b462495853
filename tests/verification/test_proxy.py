"""The fault proxy does what each toxic says, switches toxics on live connections, and logs request heads."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import pytest

from autopilot_sync.verification.guards import load_forbidden, route_violations
from autopilot_sync.verification.proxy import (
    Bandwidth,
    Blackhole,
    Direction,
    FaultProxy,
    Latency,
    RequestSeen,
    Slicer,
    Timeout,
)


@pytest.fixture
async def echo() -> AsyncIterator[int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1])
    server.close()


@pytest.fixture
async def proxy(echo: int) -> AsyncIterator[FaultProxy]:
    running = await FaultProxy("test", "127.0.0.1", echo, rng=random.Random(7)).start()
    yield running
    await running.stop()


async def roundtrip(proxy: FaultProxy, data: bytes) -> tuple[bytes, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    began = time.monotonic()
    writer.write(data)
    await writer.drain()
    got = await asyncio.wait_for(reader.readexactly(len(data)), 10)
    elapsed = time.monotonic() - began
    writer.close()
    return got, elapsed


async def test_forwards_bytes_unchanged(proxy: FaultProxy) -> None:
    data = bytes(range(256)) * 100
    got, _ = await roundtrip(proxy, data)
    assert got == data
    assert proxy.stats.bytes_upstream == len(data) == proxy.stats.bytes_downstream


async def test_latency_delays_each_direction(proxy: FaultProxy) -> None:
    proxy.set_toxics(Latency(0.1, 0.02))
    _, elapsed = await roundtrip(proxy, b"ping")
    assert elapsed >= 0.15  # up and down


async def test_slicer_and_bandwidth_keep_the_bytes_intact(proxy: FaultProxy) -> None:
    proxy.set_toxics(Slicer(average=7, variation=5), Bandwidth(200_000))
    data = bytes(random.Random(1).randbytes(5000))
    got, _ = await roundtrip(proxy, data)
    assert got == data


async def test_blackhole_is_silent_and_switchable_on_a_live_connection(proxy: FaultProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    proxy.set_toxics(Blackhole(Direction.DOWNSTREAM))
    writer.write(b"lost")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(4), 0.3)
    assert proxy.stats.dropped_bytes == 4
    proxy.clear()
    writer.write(b"back")
    await writer.drain()
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"back"
    writer.close()


async def test_reset_all_sends_rst(proxy: FaultProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"x")
    await reader.readexactly(1)
    assert proxy.reset_all() == 1
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(1), 5)
    writer.close()
    assert proxy.stats.resets == 1


async def test_timeout_closes_the_connection_later(proxy: FaultProxy) -> None:
    proxy.set_toxics(Timeout(0.2))
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"x")
    await writer.drain()
    began = time.monotonic()
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(1), 5)
    assert time.monotonic() - began >= 0.15
    writer.close()


async def test_the_request_log_sees_paths_and_flags_legacy_routes(proxy: FaultProxy) -> None:
    body = b'{"a":1}'
    request = (
        b"POST /api/sync/token HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n"
        + body
        + b"GET /v1/database/autopilot-sync/subscribe HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"
    )
    await roundtrip(proxy, request)
    assert [(r.method, r.path, r.upgrade) for r in proxy.requests] == [
        ("POST", "/api/sync/token", ""),
        ("GET", "/v1/database/autopilot-sync/subscribe", "websocket"),
    ]
    forbidden = load_forbidden()
    assert route_violations(proxy.requests, forbidden) == []
    legacy_path = next(symbol.symbol for symbol in forbidden if symbol.symbol.startswith("/"))
    planted = [RequestSeen("test", "GET", legacy_path, "websocket"), RequestSeen("test", "GET", "/other", "")]
    found = route_violations(planted, forbidden)
    assert [v.what for v in found] == ["legacy route", "unknown route"]


def test_slicing_follows_the_seed() -> None:
    def pieces(seed: int) -> list[int]:
        proxy = FaultProxy("p", "127.0.0.1", 1, rng=random.Random(seed))
        return [len(p) for p in proxy._slice(bytes(500), Slicer(10, 8))]

    assert pieces(3) == pieces(3)
    assert pieces(3) != pieces(4)
