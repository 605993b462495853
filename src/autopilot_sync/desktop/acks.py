"""Bounded-rate checkpoint reports: which `ack_checkpoint(stream, seq)` calls to make, and when.

Replaying ten thousand events must not become ten thousand reducer calls: per stream, at most one report per
`min_interval` seconds, always of the newest checkpoint, and never one the host would refuse as a regression (a
report lower than one already sent, e.g. after a rebuild restarted the stream below it). Pure: the caller passes
the clock and does the call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_MIN_INTERVAL = 1.0
"""Seconds between two reports of the same stream."""


@dataclass(frozen=True, slots=True)
class AckCall:
    """One `ack_checkpoint` call to make."""

    stream_id: str
    seq: int


@dataclass
class AckScheduler:
    """Per stream: the newest checkpoint to report, the last one reported and when."""

    min_interval: float = DEFAULT_MIN_INTERVAL
    _wanted: dict[str, int] = field(default_factory=dict)
    _sent: dict[str, int] = field(default_factory=dict)
    _sent_at: dict[str, float] = field(default_factory=dict)

    def note(self, stream_id: str, checkpoint: int) -> None:
        """A stream's checkpoint moved (or was rebuilt) to `checkpoint`."""
        self._wanted[stream_id] = checkpoint

    def due(self, now: float) -> list[AckCall]:
        """The calls to make now (and records them as sent at `now`)."""
        calls: list[AckCall] = []
        for stream_id, seq in sorted(self._wanted.items()):
            if seq <= self._sent.get(stream_id, 0):
                continue
            if now - self._sent_at.get(stream_id, float("-inf")) < self.min_interval:
                continue
            self._sent[stream_id] = seq
            self._sent_at[stream_id] = now
            calls.append(AckCall(stream_id, seq))
        return calls

    def failed(self, call: AckCall, recorded: int | None = None) -> None:
        """A call was refused or lost; `recorded` is the host's value when known. The next `due` retries if needed."""
        self._sent[call.stream_id] = recorded if recorded is not None else 0
        if recorded is None:
            self._sent_at.pop(call.stream_id, None)

    def next_due_in(self, now: float) -> float | None:
        """Seconds until some pending report may be sent (0 if one is due now), None when nothing is pending."""
        waits = [
            max(0.0, self._sent_at.get(stream_id, float("-inf")) + self.min_interval - now)
            for stream_id, seq in self._wanted.items()
            if seq > self._sent.get(stream_id, 0)
        ]
        return min(waits) if waits else None

    def sent(self, stream_id: str) -> int:
        """The newest checkpoint reported for `stream_id` (0 if none)."""
        return self._sent.get(stream_id, 0)
