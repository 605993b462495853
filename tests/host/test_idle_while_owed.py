"""The idle timeout measures the client's silence, not the host's: a real host process that is behind (busy with
another connection's heavy calls) must not drop a quiet client it has not yet read or answered.

Session 8 saw it under overload (docs/performance.md, "Round 6 — fanin2"): the host closed a producer with 1001
"idle timeout" while that connection's calls were ~40 s behind. Here a reducer that holds the host's event loop
stands in for a heavy batch (the host runs calls on its loop, so one such call makes every other socket wait).
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

import aiohttp

from autopilot_sync.devtools.processes import ServiceProcess, start_host
from autopilot_sync.host.ws_handshake import V2_PROTOCOL
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime.frames import split_server_body
from autopilot_sync.spacetime.messages import (
    CallReducer,
    CallReducerFlags,
    InitialConnection,
    ReducerOk,
    ReducerResult,
    ServerMessage,
    Subscribe,
    encode_client_message,
)

DATABASE = "slow"
MODULE_SOURCE = '''
"""A module whose `hold` reducer keeps the host busy, as a heavy batch does."""
import time

from autopilot_sync.bindings.context import ReducerContext
from autopilot_sync.bindings.module import Module
from autopilot_sync.spacetime import algebraic as at

module = Module("slow", version="1")
module.table("note", [("id", at.U64), ("text", at.STRING)], primary_key="id", auto_inc=["id"])


@module.reducer(("millis", at.U32))
def hold(ctx: ReducerContext, millis: int) -> None:
    """Occupy the host for `millis` (the host runs calls on its event loop: every socket waits meanwhile)."""
    time.sleep(millis / 1000)


@module.reducer(("text", at.STRING))
def note(ctx: ReducerContext, text: str) -> None:
    """Insert a row: its answer is the transaction's, sent once the commit is durable."""
    ctx.db.note.insert((0, text))
'''
IDLE_SECONDS = 2
HOLDS = 4
HOLD_MILLIS = 900
TEXT = at.product(("text", at.STRING))


class _Socket:
    """A v2 client over aiohttp that answers no ping unless told to (`autoping=False`): a client gone quiet."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.inbox: list[ServerMessage] = []

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, url: str, *, autoping: bool) -> _Socket:
        ws = await http.ws_connect(
            f"{url}/v1/database/{DATABASE}/subscribe",
            protocols=(V2_PROTOCOL,),
            params={"compression": "None"},
            autoping=autoping,
        )
        socket = cls(ws)
        assert isinstance(await socket.next(within=10), InitialConnection)
        return socket

    async def call(self, request_id: int, reducer: str, params: at.ProductType, *args: Any) -> None:
        message = CallReducer(request_id, CallReducerFlags.DEFAULT, reducer, bsatn.codec(params).encode(args))
        await self.ws.send_bytes(encode_client_message(message))

    async def next(self, within: float) -> ServerMessage | tuple[int | None, str]:
        """The next server message, or (close code, reason) once the host closed the socket; pings are skipped."""
        while not self.inbox:
            msg = await self.ws.receive(timeout=within)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return self.ws.close_code, str(msg.extra or "")
            if msg.type is aiohttp.WSMsgType.BINARY:
                data: bytes = msg.data
                assert data[0] == 0, "compression=None"
                self.inbox.extend(split_server_body(data[1:]))
        return self.inbox.pop(0)


def _start(tmp_path: Path) -> ServiceProcess:
    (tmp_path / "slow_module.py").write_text(MODULE_SOURCE)
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
        "AUTOPILOT_SYNC_HOST_IDLE_TIMEOUT_SECONDS": str(IDLE_SECONDS),
        "AUTOPILOT_SYNC_HOST_PING_INTERVAL_SECONDS": "1",
    }
    return start_host(tmp_path / "data", module="slow_module", database=DATABASE, env=env)


async def _closed(http: aiohttp.ClientSession, url: str, reason: str) -> float:
    async with http.get(f"{url}/metrics") as response:
        metrics = await response.text()
    series = f'autopilot_sync_host_connections_closed_total{{reason="{reason}"}}'
    found = re.search(rf"^{re.escape(series)} (\S+)$", metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_a_quiet_client_the_host_is_behind_on_is_answered_before_any_idle_close(tmp_path: Path) -> None:
    host = _start(tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            busy = await _Socket.open(http, host.url, autoping=True)
            quiet = await _Socket.open(http, host.url, autoping=False)
            # The busy client's heavy calls go first: the host is behind for HOLDS x HOLD_MILLIS, over the idle
            # timeout. The quiet client sends one call into that and then says nothing more (no pongs either).
            for request_id in range(HOLDS):
                await busy.call(request_id, "hold", at.product(("millis", at.U32)), HOLD_MILLIS)
            await asyncio.sleep(0.2)
            await quiet.call(7, "note", TEXT, "still here")

            answer = await quiet.next(within=30)
            assert isinstance(answer, ReducerResult), f"the host dropped a client it owed an answer: {answer}"
            assert answer.request_id == 7 and isinstance(answer.result, ReducerOk)
            for _ in range(HOLDS):
                result = await busy.next(within=30)
                assert isinstance(result, ReducerResult) and isinstance(result.result, ReducerOk), result
            # Once answered and truly silent, the quiet client is idle: dropped within the bound, as before.
            closed = await quiet.next(within=IDLE_SECONDS * 4)
            assert closed == (1001, "idle timeout: nothing received from the client")
            await busy.ws.close()
    finally:
        host.stop()


async def test_a_hung_client_with_updates_stuck_for_it_is_still_dropped_within_the_idle_bound(tmp_path: Path) -> None:
    """Output waiting for a client is the host's debt only while the client takes it: one that subscribed and then
    reads nothing (its kernel still acknowledges, its window is shut; here it took < 1 MB of the ~14 MB) is dropped
    as idle, not kept for ever."""
    host = _start(tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            writer = await _Socket.open(http, host.url, autoping=True)
            hung = await _Socket.open(http, host.url, autoping=False)
            subscribe = Subscribe(1, 1, ("SELECT * FROM note",))
            await hung.ws.send_bytes(encode_client_message(subscribe))
            # Megabytes of updates, more than the hung client's buffers and the host's socket buffer hold.
            for request_id in range(240):
                await writer.call(request_id, "note", TEXT, "z" * 60_000)
                assert isinstance(await writer.next(within=30), ReducerResult)
            await writer.ws.close()  # it goes (reason "client"): the one idle close to come is the hung client's
            for _ in range(IDLE_SECONDS * 50):  # the bound: the idle timeout and a tick, on a busy machine x10
                if await _closed(http, host.url, "idle_timeout"):
                    break
                await asyncio.sleep(0.2)
            assert await _closed(http, host.url, "idle_timeout") == 1
            assert await _closed(http, host.url, "send_queue_full") == 0
    finally:
        host.stop()
