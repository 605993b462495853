"""A real `autopilot-sync host` process for the client tests (async start, SIGKILL, restart in place).

Started with the chat module, killable with SIGKILL and restartable on the same port and data directory.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

HOST_BIN = Path(sys.executable).with_name("autopilot-sync")
DATABASE = "chat"


class HostProcess:
    """One host subprocess; `start()` waits for its `ready` line."""

    def __init__(self, data_dir: Path, port: int, module: str = "autopilot_sync.examples.chat") -> None:
        self.data_dir = data_dir
        self.port = port
        self.module = module
        self.process: asyncio.subprocess.Process | None = None
        self.output: list[str] = []
        self._drain: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, ready_within: float = 20.0) -> None:
        env = dict(os.environ)
        env.update(
            AUTOPILOT_SYNC_HOST_MODULE=self.module,
            AUTOPILOT_SYNC_HOST_DATABASE=DATABASE,
            AUTOPILOT_SYNC_HOST_DATA_DIR=str(self.data_dir),
            AUTOPILOT_SYNC_HOST_LISTEN=f"127.0.0.1:{self.port}",
        )
        self.process = await asyncio.create_subprocess_exec(
            str(HOST_BIN),
            "host",
            "--log-level",
            "WARNING",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(ready_within):
                while True:
                    line = (await self.process.stdout.readline()).decode(errors="replace")
                    if not line:
                        raise RuntimeError(f"host exited before ready: {''.join(self.output)}")
                    self.output.append(line)
                    if "ready" in line:
                        break
        except BaseException:
            await self.kill()  # a host that never became ready must not outlive the test
            raise
        self._drain = asyncio.create_task(self._drain_output())

    async def _drain_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.output.append(line.decode(errors="replace"))

    async def kill(self) -> None:
        """SIGKILL: no clean shutdown, sockets reset by the kernel."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()
        if self._drain is not None:
            self._drain.cancel()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(10):
                    await self.process.wait()
            except TimeoutError:
                await self.kill()
            if self._drain is not None:
                self._drain.cancel()
