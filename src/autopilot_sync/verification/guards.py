"""Structural guards of a run: no legacy route was contacted, and every component ran as its own process.

Both are facts about the run rather than about the data, so they are checked beside the history: the proxies'
request logs against the blocked-symbol list the zero-legacy gate uses (`gate/blocked-symbols.toml`, read at run
time so this file never spells a blocked string), and `/proc` for who owns which socket.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from autopilot_sync.gate.files import find_root
from autopilot_sync.gate.symbols import BLOCKED_SYMBOLS_PATH, BlockedSymbol, load_blocked_symbols
from autopilot_sync.verification.proxy import RequestSeen

#: The only HTTP routes a component may contact (host API, control's token route and OIDC documents, metrics).
ALLOWED_PREFIXES = ("/v1/", "/api/sync/token", "/.well-known/", "/metrics", "/healthz")


@dataclass(frozen=True, slots=True)
class GuardViolation:
    """One structural violation: a legacy or unknown route, or a component not running as a separate process."""

    what: str
    detail: str

    def __str__(self) -> str:
        return f"{self.what}: {self.detail}"


def load_forbidden(root: Path | None = None) -> tuple[BlockedSymbol, ...]:
    """The blocked symbols of the repository the package runs from (the same list `gate check` enforces)."""
    base = root or find_root(Path(__file__).resolve().parent)
    return load_blocked_symbols(base / BLOCKED_SYMBOLS_PATH)


def route_violations(requests: Iterable[RequestSeen], forbidden: Iterable[BlockedSymbol]) -> list[GuardViolation]:
    """Every request whose path holds a blocked symbol, or lies outside the canonical routes."""
    symbols = tuple(forbidden)
    found: list[GuardViolation] = []
    for request in requests:
        line = f"{request.method} {request.path}"
        hits = [symbol for symbol in symbols if symbol.occurs_in(line)]
        if hits:
            ids = ", ".join(symbol.id for symbol in hits)
            found.append(GuardViolation("legacy route", f"{request.proxy}: {line} (blocked: {ids})"))
        elif not request.path.startswith(ALLOWED_PREFIXES):
            found.append(GuardViolation("unknown route", f"{request.proxy}: {line}"))
    return found


def _tcp_table() -> list[tuple[int, int, int, int]]:
    """`(local_port, remote_port, state, inode)` of every IPv4/IPv6 TCP socket in this network namespace."""
    rows = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local_port = int(parts[1].rsplit(":", 1)[1], 16)
            remote_port = int(parts[2].rsplit(":", 1)[1], 16)
            rows.append((local_port, remote_port, int(parts[3], 16), int(parts[9])))
    return rows


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets process `pid` holds open."""
    inodes: set[int] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        entries = list(fd_dir.iterdir())
    except OSError:
        return inodes
    for entry in entries:
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


_LISTEN = 0x0A
_ESTABLISHED = 0x01


def listener_owned_by(pid: int, port: int) -> bool:
    """True when process `pid` holds the socket listening on `port`."""
    mine = socket_inodes(pid)
    return any(local == port and state == _LISTEN and inode in mine for local, _, state, inode in _tcp_table())


def connected_to(pid: int, port: int) -> bool:
    """True when process `pid` holds an established TCP connection to `port`."""
    mine = socket_inodes(pid)
    return any(remote == port and state == _ESTABLISHED and inode in mine for _, remote, state, inode in _tcp_table())


def process_violations(
    listeners: Iterable[tuple[str, int | None, int]], clients: Iterable[tuple[str, int | None, int]]
) -> list[GuardViolation]:
    """Each `(name, pid, port)` listener must be a live child other than us holding that port; each client must be
    a live child other than us connected to its proxy's port (so it really goes through the network)."""
    found: list[GuardViolation] = []
    me = os.getpid()
    for name, pid, port in listeners:
        if pid is None or pid == me or not Path(f"/proc/{pid}").exists():
            found.append(GuardViolation("not a process", f"{name} has no live process of its own (pid {pid})"))
        elif not listener_owned_by(pid, port):
            found.append(GuardViolation("in-process", f"port {port} of {name} is not held by its process {pid}"))
        if listener_owned_by(me, port):
            found.append(GuardViolation("in-process", f"the verifying process itself listens on {name}'s port {port}"))
    for name, pid, port in clients:
        if pid is None or pid == me or not Path(f"/proc/{pid}").exists():
            found.append(GuardViolation("not a process", f"{name} has no live process of its own (pid {pid})"))
        elif not connected_to(pid, port):
            found.append(GuardViolation("bypass", f"{name} (pid {pid}) holds no connection to its proxy port {port}"))
    return found
