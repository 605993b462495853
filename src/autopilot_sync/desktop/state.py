"""The desktop's observable state: one frozen value the Textual UI and the headless JSON mode both render.

The sync layer is the only writer: it builds a new `DesktopState` with `dataclasses.replace` and hands it to
`StateHub.publish`, which notifies listeners only when something changed. Renderers never reach back into the sync
layer, so the UI can be tested (and screenshotted) from a state value alone.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

LOG_LINES = 200
"""Events kept in the live log of the selected stream."""


class ConnectionPhase(enum.Enum):
    """Where the connection to the host stands."""

    CONNECTING = "connecting"
    LIVE = "live"
    BACKING_OFF = "backing_off"
    OFFLINE = "offline"


class StreamPhase(enum.Enum):
    """Where one followed stream stands."""

    WAITING = "waiting"
    """Subscribed, nothing from the host yet."""
    REPLAYING = "replaying"
    """Applying events the host already had (applied < head)."""
    LIVE = "live"
    """Caught up: new events are applied as they commit."""
    RESUBSCRIBING = "resubscribing"
    """A gap was seen; resubscribed from the checkpoint to fetch the missing events."""
    REBUILDING = "rebuilding"
    """History was trimmed, the stream reset, or the host's history differs from the local copy: the local copy was
    dropped and is rebuilt from the retained floor."""
    IDLE = "idle"
    """Not subscribed live (over the desktop's `max_live_streams`): the head shows, nothing is applied until the
    stream is followed again from its checkpoint (its head moves, or it is selected)."""
    HALTED = "halted"
    """The host's own hash chain fails at an event even after a rebuild: nothing more is applied (the notice says
    at which seq)."""


@dataclass(frozen=True, slots=True)
class ConnectionView:
    """Connection state, the negotiated protocol and the session token's expiry (times are Unix seconds).

    `token_fetches` counts session tokens fetched from control since start (the first one and every refresh).
    """

    phase: ConnectionPhase = ConnectionPhase.CONNECTING
    protocol: str = ""
    attempt: int = 0
    next_retry_at: float | None = None
    reason: str = ""
    token_expires_at: float | None = None
    token_fetches: int = 0


@dataclass(frozen=True, slots=True)
class PresenceEntry:
    """One connected user (a Nostr key) and how many connections it has open."""

    npub: str
    pubkey_hex: str
    connections: int
    is_self: bool
    client_kinds: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PresenceView:
    """Who is connected: connections = rows of `active_connection`, users = distinct identities."""

    connections: int = 0
    users: int = 0
    entries: tuple[PresenceEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class StreamView:
    """One followed stream: the host's head, what is applied locally, and how a replay or rebuild is going.

    `rebuilds`, `gaps`, `duplicates` and `acks_sent` count since start; `acked_seq` is the newest checkpoint reported.
    `divergences` counts the rebuilds caused by the host's history not being the one applied here (an epoch change,
    a checkpoint ahead of the head, a chain mismatch); `last_rebuild` names the cause of the newest rebuild.
    """

    stream_id: str
    head_seq: int = 0
    applied_seq: int = 0
    retained_from_seq: int = 1
    epoch: int = 0
    phase: StreamPhase = StreamPhase.WAITING
    notice: str = ""
    replay_from_seq: int = 0
    rebuilds: int = 0
    gaps: int = 0
    duplicates: int = 0
    acked_seq: int = 0
    acks_sent: int = 0
    divergences: int = 0
    last_rebuild: str = ""

    @property
    def lag(self) -> int:
        """Events committed on the host and not yet applied here."""
        return max(self.head_seq - self.applied_seq, 0)

    @property
    def replay_progress(self) -> float:
        """Share of the current replay done, 0.0 to 1.0 (1.0 when caught up)."""
        total = self.head_seq - self.replay_from_seq
        if total <= 0 or self.applied_seq >= self.head_seq:
            return 1.0
        return max(0.0, min(1.0, (self.applied_seq - self.replay_from_seq) / total))


@dataclass(frozen=True, slots=True)
class LogLine:
    """One applied event as the live log and the event detail view show it (the chain fields for the detail)."""

    seq: int
    kind: str
    payload: str
    committed_at_us: int
    idempotency_key: str = ""
    payload_hash: str = ""
    chain: str = ""
    epoch: int = 0


@dataclass(frozen=True, slots=True)
class DesktopState:
    """Everything the desktop shows, as one value."""

    npub: str = ""
    host_url: str = ""
    database: str = ""
    connection: ConnectionView = field(default_factory=ConnectionView)
    presence: PresenceView = field(default_factory=PresenceView)
    streams: tuple[StreamView, ...] = ()
    selected_stream: str = ""
    log: tuple[LogLine, ...] = ()
    notice: str = ""
    """One line when sync needs attention beyond one stream (the host refused a stream's query set); else empty."""

    def stream(self, stream_id: str) -> StreamView | None:
        """The view of one stream, if followed."""
        return next((s for s in self.streams if s.stream_id == stream_id), None)


Listener = Callable[[DesktopState], None]


class StateHub:
    """Holds the current state and tells listeners about every change (and only about changes)."""

    def __init__(self, initial: DesktopState | None = None) -> None:
        self._state = initial or DesktopState()
        self._listeners: list[Listener] = []

    @property
    def state(self) -> DesktopState:
        """The current state."""
        return self._state

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` with each new state; returns a function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def publish(self, state: DesktopState) -> None:
        """Make `state` current and notify listeners, unless it equals the current one."""
        if state == self._state:
            return
        self._state = state
        for listener in list(self._listeners):
            listener(state)
