"""Start `autopilot-sync <service>` as a child process and wait for its `ready` line.

Tests, benchmarks and `autopilot-sync up` all need the same thing: a real service on a real socket, a way to know
when it accepts connections, and a way to kill it (gracefully or with SIGKILL). One implementation serves all three.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from autopilot_sync.lifecycle import READY_PATTERN
from autopilot_sync.settings.environment import service_environment
from autopilot_sync.settings.fields import ListenAddress
from autopilot_sync.settings.host import HostSettings

#: Characters of a child's output kept (the newest lines); older lines are dropped and counted, so a chatty child
#: under `./dev up` costs the parent a bounded amount of memory however long it runs. Bounded in characters, not
#: lines: a desktop's headless state line grows with its streams, and tests and the verification suites read every
#: state a desktop printed during a run.
OUTPUT_MAX_CHARS = 32 * 1024 * 1024
#: Characters kept of one line; the rest of a longer line is cut (and said so at the end of the kept part). Large
#: enough for a headless desktop's state line with hundreds of streams (a cut state line is unreadable JSON).
OUTPUT_MAX_LINE_CHARS = 1024 * 1024


class ServiceStartError(RuntimeError):
    """The child exited or stayed silent before printing its ready line; carries its output."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a service could listen on `host:port` right now (checked before starting, to name the flag to change)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the services do: TIME_WAIT is not "in use"
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


@dataclass
class ServiceProcess:
    """A running service child: its URL once ready, the tail of its output, and ways to stop it.

    `output` keeps the newest lines up to `max_chars` characters in all, each cut at `OUTPUT_MAX_LINE_CHARS`;
    `dropped_lines` counts the older lines let go.
    """

    service: str
    process: subprocess.Popen[str]
    url: str = ""
    output: deque[str] = field(default_factory=deque)
    dropped_lines: int = 0
    max_chars: int = OUTPUT_MAX_CHARS
    _kept_chars: int = 0
    _reader: threading.Thread | None = None
    _ready: threading.Event = field(default_factory=threading.Event)

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in _bounded_lines(self.process.stdout):
            self.output.append(line)
            self._kept_chars += len(line)
            while self._kept_chars > self.max_chars and len(self.output) > 1:
                self._kept_chars -= len(self.output.popleft())
                self.dropped_lines += 1
            match = READY_PATTERN.search(line)
            if match and not self._ready.is_set():
                self.url = match.group("url")
                self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout: float = 30.0) -> str:
        """Block until the ready line (returns the URL); ServiceStartError when the child dies or times out."""
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if time.monotonic() > deadline:
                self.kill()
                raise ServiceStartError(f"{self.service} not ready after {timeout}s:\n" + self.tail())
        if not self.url:
            raise ServiceStartError(f"{self.service} exited with {self.process.poll()}:\n" + self.tail())
        return self.url

    def tail(self, lines: int = 40) -> str:
        """The last lines the child printed."""
        kept = list(self.output)
        return "\n".join(kept[-lines:])

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks run, like a crash."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait (SIGKILL after `timeout`); returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.process.returncode)


def start_service(
    service: str,
    args: list[str] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    wait: bool = True,
    timeout: float = 30.0,
) -> ServiceProcess:
    """Run `autopilot-sync <service> [args]` with extra environment, stdout+stderr captured line by line."""
    child_env = dict(os.environ)
    child_env.update(env or {})
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    process = subprocess.Popen(
        [sys.executable, "-m", "autopilot_sync", service, *(args or [])],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=child_env,
        cwd=cwd,
    )
    running = watch_output(service, process)
    if wait:
        running.wait_ready(timeout)
    return running


def watch_output(service: str, process: subprocess.Popen[str], *, max_chars: int = OUTPUT_MAX_CHARS) -> ServiceProcess:
    """Read `process`'s stdout line by line in a daemon thread into a bounded tail, watching for its ready line."""
    running = ServiceProcess(service, process, max_chars=max_chars)
    running._reader = threading.Thread(target=running._pump, daemon=True, name=f"{service}-output")
    running._reader.start()
    return running


def _bounded_lines(stream: IO[str]) -> Iterator[str]:
    """The lines of `stream` without their newline, each cut at `OUTPUT_MAX_LINE_CHARS` (a line with no end is read
    in pieces, never held whole)."""
    while True:
        piece = stream.readline(OUTPUT_MAX_LINE_CHARS)
        if not piece:
            return
        if piece.endswith("\n") or len(piece) < OUTPUT_MAX_LINE_CHARS:
            yield piece.rstrip("\n")
            continue
        cut = 0
        while True:  # skip the rest of an overlong line, counting it
            rest = stream.readline(OUTPUT_MAX_LINE_CHARS)
            cut += len(rest.rstrip("\n"))
            if not rest or rest.endswith("\n"):
                break
        yield f"{piece} …[{cut} characters cut]" if cut else piece


def start_host(
    data_dir: Path,
    *,
    module: str = "autopilot_sync.module",
    database: str = "autopilot-sync",
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    wait: bool = True,
) -> ServiceProcess:
    """An `autopilot-sync host` child on 127.0.0.1 (a free port unless given)."""
    fields = {
        "listen": ListenAddress("127.0.0.1", port or free_port()),
        "data_dir": data_dir,
        "module": module,
        "database": database,
    }
    host_env = {**service_environment(HostSettings, fields), **(env or {})}
    return start_service("host", env=host_env, wait=wait)
