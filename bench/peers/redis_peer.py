"""Redis 7 Streams as a peer: `XADD` with explicit ids `0-<seq>` under `appendonly yes` + `appendfsync always`.

Durability as configured here: every write is in the AOF and fsynced before Redis replies (one fsync per event
loop turn, so a pipeline shares one). The explicit id makes appends ordered and idempotent: re-sending seq `n` is
refused as `ID ... equal or smaller`, which the producer treats as "already there". Readers resume with `XREAD`
from the last id they saw.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis

from autopilot_sync.devtools.processes import free_port
from bench.peers.common import ServerProcess, require_binary, wait_port

NAME = "redis"
DURABILITY = "AOF appendfsync always (fsync before reply)"


@dataclass
class RedisPeer:
    """One redis-server on a free port with its AOF directory."""

    root: Path
    port: int = 0
    server: ServerProcess | None = None

    def start(self) -> None:
        """Start (or restart on the same port and directory) redis-server with AOF fsync always."""
        binary = require_binary("redis-server")
        self.port = self.port or free_port()
        self.root.mkdir(parents=True, exist_ok=True)
        args = [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.root),
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
            "--protected-mode", "no",
            "--daemonize", "no",
            "--maxclients", "20000",
            "--logfile", "",
        ]  # fmt: skip
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        wait_port(self.port, process)
        self.server = ServerProcess(process, self.port)

    @property
    def durability(self) -> str:
        """What an acknowledgement promises."""
        return DURABILITY

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    @property
    def pid(self) -> int:
        assert self.server is not None
        return self.server.pid

    def client(self) -> aioredis.Redis:
        """A client with its own single connection (one per subscriber, like a WebSocket)."""
        return aioredis.Redis(host="127.0.0.1", port=self.port, single_connection_client=True)


def entry_id(seq: int) -> str:
    """The explicit stream id of seq `n`: ordered and idempotent."""
    return f"0-{seq}"


def fields(stream: str, seq: int, body: bytes) -> dict[str, bytes | str]:
    """The same fields our events carry: key, kind, payload (the hash travels in ours only)."""
    return {"key": f"{stream}:{seq}", "kind": "bench.event", "payload": body}
