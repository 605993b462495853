"""When a quiet WebSocket client counts as idle: by its own silence, never by the host's lateness.

The idle timeout (`WebSocketOptions.idle_timeout`) exists to find clients that are gone (half-open links, hung
peers). It counts from the last frame the host *read*, so a host that is behind would blame its clients: under
overload (docs/performance.md, "Round 6 — fanin2") the host closed a producer with 1001 "idle timeout" while that
connection's calls were ~40 s behind — its frames (the pong too) waited unread, its answers were owed. Three facts
say the host, not the client, is the one behind, and the rule here takes each of them out of the client's silence:

- the timer itself ran late: while the event loop was busy elsewhere the host read nothing from anybody, so that
  time is not the client's (`quiet_since` moves the window by the lateness);
- the host owes the connection something: calls it started and has not answered (a commit waiting to be durable),
  answers held for durability, bytes the client sent that the host has not read yet, or frames still going out to
  a client that keeps taking them (its pong is behind them) — the client is waiting on the host, so its silence
  counts from now (`ConnectionDebt.owed`).

A truly idle client (nothing owed, the host on time), a half-open one (nothing arrives, nothing is acknowledged)
and a hung one (its kernel acknowledges, its application reads nothing, so the bytes it has taken stop growing)
are dropped as before: whatever the host owed them is answered in finite time, and output that does not move is
not progress.
"""

from __future__ import annotations

import socket
import struct
import sys
from dataclasses import dataclass

#: `struct tcp_info` (linux/tcp.h, since Linux 4.1): eight one-byte fields, 24 `__u32`s (rto … total_retrans), then
#: `__u64`s: pacing_rate, max_pacing_rate, `tcpi_bytes_acked` (bytes of ours the peer acknowledged, cumulative).
_TCP_INFO_BYTES_ACKED = struct.Struct("=120xQ")
_TCP_INFO_BYTES = _TCP_INFO_BYTES_ACKED.size


@dataclass(frozen=True, slots=True)
class ConnectionDebt:
    """What the host owes one connection when its idle window runs out (the timer's view, gathered by the adapter)."""

    #: calls (reducers, procedures) started and not yet answered: their commits wait to be durable
    calls_in_flight: int
    #: answers computed and held until the state they reveal is durable
    holding: bool
    #: bytes from the client in the socket that the host has not read yet (its pong may be among them)
    unread_bytes: int
    #: frames still go out to the client, and it took more of them since the timer last looked (`bytes_acked`)
    sending_moves: bool

    @property
    def owed(self) -> bool:
        """Whether the client is waiting on the host: then its silence is not idleness.

        Frames still going out count only while they move: a half-open or hung peer takes nothing more, so a host
        with bytes stuck for it still drops it in time.
        """
        return bool(self.calls_in_flight or self.holding or self.unread_bytes or self.sending_moves)


def quiet_since(last_heard: float, now: float, lateness: float) -> float:
    """The moment the client's silence counts from, after a timer tick that ran `lateness` seconds after it was due.

    While the event loop was busy the host read nothing from any socket, so the late part is not the client's
    silence: the window moves by it (never past `now`).
    """
    if lateness <= 0.0:
        return last_heard
    return min(now, last_heard + lateness)


def unread_bytes(sock: socket.socket | None) -> int:
    """Bytes received from the peer that wait in the kernel, not yet read by the host (0 when it cannot tell)."""
    if sock is None or sys.platform == "win32":
        return 0
    # POSIX only, and needed only when an idle window runs out: imported here, not at the host's start.
    import fcntl
    import termios

    try:
        answer = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return 0
    return int(struct.unpack("i", answer)[0])


def bytes_acked(sock: socket.socket | None) -> int | None:
    """Bytes the peer has acknowledged of what the host sent, since the connection began (Linux's `TCP_INFO`; None
    elsewhere). It grows only while the peer's application reads: a full receive window stops it."""
    option = getattr(socket, "TCP_INFO", None)
    if sock is None or option is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, option, _TCP_INFO_BYTES)
    except OSError:
        return None
    if len(info) < _TCP_INFO_BYTES:
        return None
    return int(_TCP_INFO_BYTES_ACKED.unpack_from(info)[0])
