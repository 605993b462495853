"""What the WebSocket framing itself costs per call: aiohttp against picows, server and client, one frame each way.

`python -m bench.ws_framing [--calls 3000] [--rounds 3] [--stacks aiohttp,picows]` starts two echo-shaped servers in
child processes (aiohttp, as the host serves `/v1/database/:name/subscribe`, and picows), then runs `--calls` round
trips of a 360-byte binary frame answered by a 120-byte one (the size of a one-event `CallReducer` and its
`ReducerResult`), one in flight, with an aiohttp client and a picows client against each server, the pairs in turn
with the order flipped every round (`bench.ab.interleaved`), and prints the medians of the server process's CPU
(`/proc`) and the client's CPU per round trip for each stack.

Why: issue 21 named a native WebSocket stack (picows) as a lever for the per-call cost; this says how much of the
host's ~1 ms of CPU per call the framing is, before anyone swaps a stack. Needs picows, which is not a project
dependency (`uv pip install picows` into a scratch venv with aiohttp and uvloop).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

from autopilot_sync.devtools.processes import free_port
from bench.ab import interleaved
from bench.proc_cpu import process_cpu_seconds
from bench.stats import median

STACKS = ("aiohttp", "picows")

REQUEST = bytes(360)
REPLY = bytes(120)
WARM = 50


async def serve(kind: str, port: int) -> None:
    """One server answering every binary frame with `REPLY` (run in a child: `--serve aiohttp|picows`)."""
    if kind == "aiohttp":
        from aiohttp import WSMsgType, web

        async def handler(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse(autoping=False)
            await ws.prepare(request)
            while (await ws.receive()).type is WSMsgType.BINARY:
                await ws.send_bytes(REPLY)
            return ws

        app = web.Application()
        app.router.add_get("/", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
    else:
        import picows

        class Echo(picows.WSListener):  # type: ignore[misc]
            def on_ws_frame(self, transport: Any, frame: Any) -> None:
                if frame.msg_type == picows.WSMsgType.BINARY:
                    transport.send(picows.WSMsgType.BINARY, REPLY)
                elif frame.msg_type == picows.WSMsgType.CLOSE:
                    transport.disconnect()

        await picows.ws_create_server(lambda _request: Echo(), "127.0.0.1", port)
    print("ready", flush=True)
    await asyncio.Event().wait()


async def aiohttp_client(port: int, calls: int) -> float:
    """Client CPU seconds for `calls` round trips through aiohttp's client WebSocket (the SDK's stack)."""
    import aiohttp

    async with aiohttp.ClientSession() as session, session.ws_connect(f"http://127.0.0.1:{port}/") as ws:
        for _ in range(WARM):
            await ws.send_bytes(REQUEST)
            await ws.receive()
        started = time.process_time()
        for _ in range(calls):
            await ws.send_bytes(REQUEST)
            await ws.receive()
        return time.process_time() - started


async def picows_client(port: int, calls: int) -> float:
    """Client CPU seconds for `calls` round trips through picows (frames handed to a callback, no reader task)."""
    import picows

    loop = asyncio.get_running_loop()
    waiter: list[asyncio.Future[bytes]] = []

    class Client(picows.WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type == picows.WSMsgType.BINARY:
                waiter.pop().set_result(frame.get_payload_as_bytes())

    transport, _ = await picows.ws_connect(Client, f"ws://127.0.0.1:{port}/")

    async def round_trip() -> None:
        future: asyncio.Future[bytes] = loop.create_future()
        waiter.append(future)
        transport.send(picows.WSMsgType.BINARY, REQUEST)
        await future

    for _ in range(WARM):
        await round_trip()
    started = time.process_time()
    for _ in range(calls):
        await round_trip()
    elapsed = time.process_time() - started
    transport.disconnect()
    return elapsed


def start_servers(stacks: tuple[str, ...] = STACKS) -> dict[str, tuple[subprocess.Popen[str], int]]:
    """One server per stack, each in its own process on a free port, once they listen."""
    servers: dict[str, tuple[subprocess.Popen[str], int]] = {}
    for kind in stacks:
        port = free_port()
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.ws_framing", "--serve", kind, "--port", str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        child.stdout.readline()
        servers[kind] = (child, port)
    return servers


async def compare(servers: dict[str, tuple[subprocess.Popen[str], int]], calls: int, rounds: int) -> dict[str, Any]:
    """Every client against every server, the order flipped each round; medians of CPU µs per round trip."""
    samples: dict[str, list[float]] = {}
    pairs = [(server, client) for server in servers for client in servers]
    for _round_no, (server, client) in interleaved(pairs, rounds):
        child, port = servers[server]
        before = process_cpu_seconds(child.pid)
        client_cpu = await (aiohttp_client if client == "aiohttp" else picows_client)(port, calls)
        server_cpu = process_cpu_seconds(child.pid) - before
        samples.setdefault(f"server_{server}_us", []).append(server_cpu / calls * 1e6)
        samples.setdefault(f"client_{client}_us", []).append(client_cpu / calls * 1e6)
    return {key: round(median(values), 1) for key, values in samples.items()} | {"load_average": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ws_framing", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--stacks", default=",".join(STACKS), help="stacks to compare, comma-separated (picows needs its package)"
    )
    parser.add_argument("--serve", choices=("aiohttp", "picows"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    import uvloop

    if args.serve:
        uvloop.run(serve(args.serve, args.port))
        return 0
    stacks = tuple(stack for stack in args.stacks.split(",") if stack)
    if not stacks or set(stacks) - set(STACKS):
        parser.error(f"--stacks takes some of {', '.join(STACKS)}")
    servers = start_servers(stacks)
    try:
        print(json.dumps(uvloop.run(compare(servers, args.calls, args.rounds))))
    finally:
        for child, _ in servers.values():
            child.kill()
            child.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
