"""A real stack for the desktop's process tests: host, control and runtime processes, plus headless desktops.

Everything runs as `autopilot-sync <service>` children on free ports; the tests talk to them only over HTTP and read
what each desktop prints (one JSON state per line) and what it stored (its SQLite file).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from autopilot_sync.control.client import fetch_session_token
from autopilot_sync.desktop.identity import load_identity
from autopilot_sync.desktop.state import DesktopState
from autopilot_sync.desktop.state_lines import read_states
from autopilot_sync.desktop.store import DesktopStore
from autopilot_sync.desktop.sync import DesktopSync
from autopilot_sync.devtools.processes import ServiceProcess, start_service
from autopilot_sync.devtools.stack import DATABASE, LocalStack
from autopilot_sync.runtime.access import producer_session


def stream_state(state: dict[str, Any], stream_id: str) -> dict[str, Any]:
    """One stream's entry in a desktop's state line (empty while the desktop does not show that stream)."""
    return next((s for s in state["streams"] if s["stream_id"] == stream_id), {})


@dataclass
class Desktop:
    """One headless desktop child and where it keeps its key and store."""

    process: ServiceProcess
    config_dir: Path

    def states(self) -> list[dict[str, Any]]:
        """Every JSON state printed so far."""
        return read_states(list(self.process.output))

    def last(self) -> dict[str, Any]:
        states = self.states()
        return states[-1] if states else {}

    def seqs(self, stream_id: str) -> list[int]:
        """The seqs the desktop stored for a stream, ascending (read after it stopped or live via WAL)."""
        with sqlite3.connect(self.config_dir / f"{DATABASE}.sqlite3") as db:
            return [
                row[0]
                for row in db.execute("SELECT seq FROM applied_event WHERE stream_id = ? ORDER BY seq", (stream_id,))
            ]

    async def wait_for(
        self, what: str, check: Callable[[dict[str, Any]], bool], within: float = 30.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            state = self.last()
            if state and check(state):
                return state
            if self.process.process.poll() is not None:
                raise AssertionError(f"desktop exited while waiting for {what}:\n{self.process.tail(60)}")
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; last state {self.last()}\n{self.process.tail(30)}")

    def stop(self) -> int:
        return self.process.stop()


class Stack(LocalStack):
    """Host + control + runtime, started in `root`; `desktop()` adds headless desktops."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.desktops: list[Desktop] = []

    def start(self, *, runtime: bool = True) -> Stack:
        self.start_all(runtime=runtime)
        return self

    def desktop(self, name: str, streams: tuple[str, ...] = (), settings: dict[str, object] | None = None) -> Desktop:
        """A headless desktop; `settings` sets more `DesktopSettings` fields (e.g. `max_live_streams`)."""
        config_dir = self.root / "desktops" / name
        process = start_service(
            "desktop",
            ["--headless"],
            env=self.desktop_env(
                config_dir, extra={"streams": streams, "reconnect_max_delay_seconds": 2, **(settings or {})}
            ),
            wait=False,
        )
        desktop = Desktop(process, config_dir)
        self.desktops.append(desktop)
        return desktop

    async def append_run_events(self, run_id: str, count: int, start: int = 0) -> list[int]:
        """Append `count` run events through the runtime's HTTP API; returns the seqs it promised."""
        events = [{"kind": "run.message.delta", "data": {"n": start + i}} for i in range(count)]
        async with (
            producer_session(self.producer_socket) as http,
            http.post(f"{self.runtime_url}/v1/runs/{run_id}/events", json={"events": events}) as response,
        ):
            body = await response.json()
            assert response.status == 200, body
        return [item["seq"] for item in body["appended"]]

    async def call_as_admin(self, reducer: str, *args: Any) -> None:
        """Call a reducer over the host's HTTP API with an admin token the control service issued the producer."""
        await self.call_with(("sync.admin", "sync.subscribe"), reducer, *args)

    async def call_with(self, scopes: tuple[str, ...], reducer: str, *args: Any) -> None:
        """Call a reducer over the host's HTTP API with a token for `scopes` the control service issued the producer."""
        token = await fetch_session_token(self.control_url, self.producer_key, scopes, ("*",), None, "test")
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{self.host_url}/v1/database/{DATABASE}/call/{reducer}",
                json=list(args),
                headers={"Authorization": f"Bearer {token.token}"},
            ) as response,
        ):
            text = await response.text()
            assert response.status == 200, text

    def stop(self) -> None:
        for desktop in self.desktops:
            desktop.stop()
        self.stop_all()


class InProcessDesktop:
    """A desktop's sync in this process against the stack, every state it publishes kept.

    `streams` are the streams it follows (default: every stream it sees a head of); `prepare` gets the sync before it
    starts, so a test can reach into its SDK client (e.g. to force an ordering of messages).
    """

    def __init__(
        self,
        stack: Stack,
        config_dir: Path,
        select: str = "",
        streams: tuple[str, ...] = (),
        prepare: Callable[[DesktopSync], None] | None = None,
    ) -> None:
        config_dir.mkdir(parents=True, exist_ok=True)
        stack.user_key_for(config_dir)  # a demo reader's key: stream rows are visible only to granted readers
        self.store = DesktopStore(config_dir / f"{DATABASE}.sqlite3")
        self.sync = DesktopSync(
            base_url=stack.host_url,
            database=DATABASE,
            control_url=stack.control_url,
            identity=load_identity(config_dir),
            store=self.store,
            streams=streams,
        )
        if prepare is not None:
            prepare(self.sync)
        self.states: list[DesktopState] = []
        self.sync.hub.listen(self.states.append)
        if select:  # as soon as the stream is followed, so its events (and notices) are on screen
            loop = asyncio.get_running_loop()

            def selector(state: DesktopState) -> None:
                if state.selected_stream != select and state.stream(select) is not None:
                    loop.call_soon(self.sync.select, select)

            self.sync.hub.listen(selector)
        self.stop = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self.sync.run(self.stop))

    async def wait_for(self, what: str, check: Callable[[DesktopState], bool], within: float = 60.0) -> DesktopState:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = next((s for s in reversed(self.states) if check(s)), None)
            if found is not None:
                return found
            if self.task.done():
                raise AssertionError(f"sync ended while waiting for {what}: {self.task.exception()!r}")
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; last state {self.sync.hub.state}")

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 20)
        self.store.close()


@contextlib.contextmanager
def running_stack(
    root: Path, *, runtime: bool = True, configure: Callable[[Stack], None] | None = None
) -> Iterator[Stack]:
    """The one start-up of the desktop tests' stacks: `configure` adjusts the stack before it starts (settings, the
    module, the owner), `start_all` stops whatever it started if a service fails, and the stack (desktops first)
    is stopped after the test."""
    stack = Stack(root)
    if configure is not None:
        configure(stack)
    try:
        yield stack.start(runtime=runtime)
    finally:
        stack.stop()
