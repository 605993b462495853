"""The idle timer's rule (`host/liveness.py`): a client waiting on the host is not idle; a gone one still is.

The end-to-end proof over a real host process is `tests/host/test_idle_while_owed.py`; the idle and half-open
drops stay proven by `tests/host/test_websocket.py` and the verification scenario `half-open`.
"""

from __future__ import annotations

import socket
import sys
import time

import pytest

from autopilot_sync.host.liveness import ConnectionDebt, bytes_acked, quiet_since, unread_bytes

NOTHING = ConnectionDebt(calls_in_flight=0, holding=False, unread_bytes=0, sending_moves=False)


def test_a_client_owed_nothing_is_idle() -> None:
    """Among them a half-open or hung peer with bytes stuck for it: output that does not move is no debt."""
    assert not NOTHING.owed


@pytest.mark.parametrize(
    "debt",
    [
        ConnectionDebt(calls_in_flight=1, holding=False, unread_bytes=0, sending_moves=False),
        ConnectionDebt(calls_in_flight=0, holding=True, unread_bytes=0, sending_moves=False),
        ConnectionDebt(calls_in_flight=0, holding=False, unread_bytes=12, sending_moves=False),
        ConnectionDebt(calls_in_flight=0, holding=False, unread_bytes=0, sending_moves=True),
    ],
    ids=["call-in-flight", "answer-held-for-durability", "frames-unread", "output-still-moving"],
)
def test_a_client_the_host_owes_is_not_idle(debt: ConnectionDebt) -> None:
    assert debt.owed


def test_the_hosts_lateness_is_not_the_clients_silence() -> None:
    assert quiet_since(100.0, now=140.0, lateness=0.0) == 100.0
    assert quiet_since(100.0, now=140.0, lateness=25.0) == 125.0
    assert quiet_since(100.0, now=140.0, lateness=60.0) == 140.0  # never past now
    assert quiet_since(100.0, now=140.0, lateness=-0.001) == 100.0  # a timer on time moves nothing


@pytest.mark.skipif(sys.platform == "win32", reason="FIONREAD on sockets is POSIX")
def test_unread_bytes_counts_what_the_peer_sent_and_nobody_read() -> None:
    left, right = socket.socketpair()
    with left, right:
        assert unread_bytes(right) == 0
        left.sendall(b"pong-behind-a-call")
        deadline = time.monotonic() + 5
        while unread_bytes(right) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert unread_bytes(right) == len(b"pong-behind-a-call")
        right.recv(100)
        assert unread_bytes(right) == 0
    assert unread_bytes(None) == 0


def _acked_after(sock: socket.socket, at_least: int) -> int:
    deadline = time.monotonic() + 5
    while True:
        acked = bytes_acked(sock)
        assert acked is not None
        if acked >= at_least or time.monotonic() > deadline:
            return acked
        time.sleep(0.01)


@pytest.mark.skipif(not hasattr(socket, "TCP_INFO"), reason="TCP_INFO is Linux's")
def test_bytes_acked_grows_while_the_peer_reads_and_stops_when_it_does_not() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        with client, accepted:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            assert bytes_acked(accepted) == 0
            accepted.sendall(b"x" * 1000)
            assert _acked_after(accepted, 1000) == 1000  # what the peer took, exactly
            # A peer that reads nothing more: the host's bytes pile up and the acknowledged count stops.
            accepted.setblocking(False)
            sent = 0
            try:
                while sent < 8 * 1024 * 1024:
                    sent += accepted.send(b"y" * 65536)
            except BlockingIOError:
                pass
            stalled = _acked_after(accepted, 1000 + sent)
            assert stalled < 1000 + sent
            time.sleep(0.3)
            assert bytes_acked(accepted) == stalled
    assert bytes_acked(None) is None
