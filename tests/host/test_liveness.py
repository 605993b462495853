"""The idle timer's rule (`host/liveness.py`): a client waiting on the host is not idle; a gone one still is.

The end-to-end proof over a real host process is `tests/host/test_idle_while_owed.py`; the idle and half-open
drops stay proven by `tests/host/test_websocket.py` and the verification scenario `half-open`.
"""

from __future__ import annotations

import socket
import sys
import time

import pytest

from autopilot_sync.host.liveness import ConnectionDebt, last_ack_age, quiet_since, unread_bytes

NOTHING = ConnectionDebt(calls_in_flight=0, holding=False, unread_bytes=0, sending=False, last_ack_age=None)


def test_a_client_owed_nothing_is_idle() -> None:
    assert not NOTHING.owed(30.0)


@pytest.mark.parametrize(
    "debt",
    [
        ConnectionDebt(calls_in_flight=1, holding=False, unread_bytes=0, sending=False, last_ack_age=None),
        ConnectionDebt(calls_in_flight=0, holding=True, unread_bytes=0, sending=False, last_ack_age=None),
        ConnectionDebt(calls_in_flight=0, holding=False, unread_bytes=12, sending=False, last_ack_age=None),
        ConnectionDebt(calls_in_flight=0, holding=False, unread_bytes=0, sending=True, last_ack_age=0.5),
    ],
    ids=["call-in-flight", "answer-held-for-durability", "frames-unread", "sending-and-acknowledged"],
)
def test_a_client_the_host_owes_is_not_idle(debt: ConnectionDebt) -> None:
    assert debt.owed(30.0)


@pytest.mark.parametrize("age", [None, 30.0, 120.0], ids=["unknown", "at-the-timeout", "long-ago"])
def test_a_peer_that_acknowledges_nothing_is_idle_though_bytes_wait_for_it(age: float | None) -> None:
    """A half-open link: the host's bytes for it never drain, and that must not keep it alive."""
    stuck = ConnectionDebt(calls_in_flight=0, holding=False, unread_bytes=0, sending=True, last_ack_age=age)
    assert not stuck.owed(30.0)


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


@pytest.mark.skipif(not hasattr(socket, "TCP_INFO"), reason="TCP_INFO is Linux's")
def test_last_ack_age_reads_how_long_ago_the_peer_acknowledged() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        with client, accepted:
            accepted.sendall(b"x" * 1000)
            assert client.recv(1000)
            time.sleep(0.05)  # the client's ACK arrives on loopback at once
            age = last_ack_age(accepted)
            assert age is not None and 0.0 <= age < 5.0
            time.sleep(0.3)  # nothing more sent, nothing acknowledged: the age grows with the clock
            later = last_ack_age(accepted)
            assert later is not None and later >= age + 0.25
    assert last_ack_age(None) is None
