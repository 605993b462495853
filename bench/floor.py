"""The physical floor under every number: a loopback TCP round trip and one fsync on the disk the data lives on.

Both are measured with blocking sockets and plain `os.fsync`, so they are what the machine can do with no
protocol, no event loop and no database in the way.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.stats import quantile


@dataclass(frozen=True)
class Floor:
    """Medians and p99 of both, in milliseconds."""

    rtt_p50_ms: float
    rtt_p99_ms: float
    fsync_p50_ms: float
    fsync_p99_ms: float


def loopback_rtt(samples: int = 2000) -> list[float]:
    """Seconds per 64-byte ping-pong over 127.0.0.1 TCP (Nagle off), echo in a thread."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def echo() -> None:
        conn, _ = server.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while data := conn.recv(64):
                conn.sendall(data)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    client = socket.create_connection(server.getsockname())
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    payload = b"x" * 64
    times = []
    with client:
        for _ in range(samples):
            started = time.perf_counter()
            client.sendall(payload)
            got = 0
            while got < len(payload):
                got += len(client.recv(64))
            times.append(time.perf_counter() - started)
    thread.join(2)
    server.close()
    return times


def fsync_latency(directory: Path, samples: int = 200) -> list[float]:
    """Seconds per append of 4 KiB + fsync to one file in `directory` (what a commit log does)."""
    block = os.urandom(4096)
    times = []
    with tempfile.NamedTemporaryFile(dir=directory) as handle:
        fd = handle.fileno()
        for _ in range(samples):
            started = time.perf_counter()
            os.write(fd, block)
            os.fsync(fd)
            times.append(time.perf_counter() - started)
    return times


def measure(directory: Path, quick: bool) -> Floor:
    """Both floors; fewer samples with `quick`."""
    directory.mkdir(parents=True, exist_ok=True)
    rtt = loopback_rtt(500 if quick else 5000)
    sync = fsync_latency(directory, 100 if quick else 500)
    return Floor(
        rtt_p50_ms=quantile(rtt, 0.5) * 1000,
        rtt_p99_ms=quantile(rtt, 0.99) * 1000,
        fsync_p50_ms=quantile(sync, 0.5) * 1000,
        fsync_p99_ms=quantile(sync, 0.99) * 1000,
    )
