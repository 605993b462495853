"""After each durable commit the hub releases held answers only on connections whose oldest held answer it frees.

An answer held for durability waits for one engine offset (`ServerSession.send_at`); the hub files each connection
under the offset its oldest held answer waits for (`WebSocketHub.hold`). A commit visits only the connections filed
at or below its offset: in a reconnect storm hundreds of sockets hold answers for later offsets, and calling
`release` on each of them after every commit freed nothing (~2% of the host's samples). The durability rule itself
(nothing leaves before its commit is durable) is proven over real sockets in `test_answers_after_durability.py` and
`test_crash_durability.py`; this pins which connections a commit visits.
"""

from __future__ import annotations

from pathlib import Path

from autopilot_sync.examples.chat import module
from autopilot_sync.host.call_outcome import CallStatus
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.host.websocket import WebSocketHub, WebSocketOptions
from autopilot_sync.spacetime.values import ConnectionId, Identity

ALICE = Caller(Identity(0xA11CE), ConnectionId(1), {"sub": "alice"})


class _RecordingConnection:
    """Test double of a `Connection` as the hub sees it: answers held until `due`, each `release` recorded."""

    def __init__(self, hub: WebSocketHub, due: int) -> None:
        self.hub = hub
        self.due = due
        self.held_until: int | None = None
        self.released: list[int] = []
        hub.hold(self, due)  # type: ignore[arg-type]

    def release(self, durable: int) -> None:
        self.released.append(durable)
        if self.due <= durable:
            self.hub.hold(self, None)  # type: ignore[arg-type]


async def test_a_commit_releases_only_connections_whose_oldest_held_answer_it_makes_durable(tmp_path: Path) -> None:
    engine = HostEngine(module, tmp_path, "chat", EngineConfig())
    await engine.start()
    try:
        hub = WebSocketHub(engine, WebSocketOptions())
        start = engine.offset
        soon, later = _RecordingConnection(hub, start + 1), _RecordingConnection(hub, start + 3)
        for name in ("ada", "bob", "cy"):
            outcome = await engine.call_reducer("add_person", (name, 30), ALICE)
            assert outcome.status is CallStatus.COMMITTED and outcome.tx is not None
            if outcome.tx.offset == start + 1:
                assert soon.released == [start + 1] and later.released == [], "a later answer is not visited"
        assert engine.offset == start + 3
        assert soon.released == [start + 1]
        assert later.released == [start + 3]
        assert hub.holding == {}
    finally:
        await engine.stop()
