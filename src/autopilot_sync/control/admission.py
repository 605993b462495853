"""Who gets through to the token decision, and how often: per-key rate limits and the NIP-98 replay memory.

Runs after the proof's signature verified (so every count belongs to a key that really signed) and before the body
is parsed. The order protects the victim of a captured header: a replay is refused first, without spending the
signer's rate budget; then the key's token bucket; then the replay memory records the proof, refusing a key that
already holds its whole share (so one key can never lock others out of a full memory).

Pure and clock-free like the guard it wraps; one instance per control process (state is in memory, so several
control replicas each apply the limits on their own — a deployment that runs more puts a shared limiter in front).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

from autopilot_sync.control.errors import ControlError, ControlErrorCode
from autopilot_sync.nostr.event import Event
from autopilot_sync.nostr.replay import Admission, ReplayGuard


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    """The bounds from `ControlSettings`: a key's sustained rate and burst, and the replay memory's shares."""

    requests_per_minute: int = 60
    burst: int = 20
    replay_entries_per_key: int = 256
    replay_entries: int = 100_000
    #: Most keys whose buckets are tracked at once; the least recently seen is forgotten (it then starts full).
    tracked_keys: int = 100_000


class KeyRateLimiter:
    """A token bucket per key: `burst` requests at once, refilled at `requests_per_minute`."""

    def __init__(self, requests_per_minute: int, burst: int, tracked_keys: int) -> None:
        if requests_per_minute <= 0 or burst <= 0 or tracked_keys <= 0:
            raise ValueError("rate, burst and tracked keys must be positive")
        self.rate = requests_per_minute / 60.0
        self.burst = float(burst)
        self.tracked_keys = tracked_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def take(self, key: str, now: float) -> float:
        """Spend one request of `key`'s budget: 0.0 when allowed, else the seconds until one is available."""
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            self._forget_oldest()
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _forget_oldest(self) -> None:
        while len(self._buckets) > self.tracked_keys:
            self._buckets.popitem(last=False)


class AdmissionControl:
    """Admits one verified NIP-98 proof or raises the `ControlError` that says why not."""

    def __init__(self, limits: AdmissionLimits, max_skew: int) -> None:
        self.limits = limits
        self.max_skew = max_skew
        self.limiter = KeyRateLimiter(limits.requests_per_minute, limits.burst, limits.tracked_keys)
        self.guard = ReplayGuard(limits.replay_entries, limits.replay_entries_per_key)

    def admit(self, event: Event, now: float) -> None:
        """Let a verified proof through once, within its key's rate; `ControlError` otherwise."""
        if self.guard.seen(event.id, now):
            raise ControlError(ControlErrorCode.REPLAYED, "this event was already used")
        wait = self.limiter.take(event.pubkey, now)
        if wait > 0:
            raise ControlError(
                ControlErrorCode.RATE_LIMITED,
                f"this key may ask for {self.limits.requests_per_minute} tokens a minute (burst {self.limits.burst})",
                retry_after=math.ceil(wait),
            )
        admission = self.guard.admit(event.id, key=event.pubkey, usable_until=event.created_at + self.max_skew, now=now)
        if admission is Admission.KEY_FULL:
            raise ControlError(
                ControlErrorCode.RATE_LIMITED,
                f"this key holds {self.limits.replay_entries_per_key} unexpired proofs, its share of the replay memory",
                retry_after=self.max_skew,
            )
        if admission is Admission.FULL:
            raise ControlError(
                ControlErrorCode.BUSY, "the replay memory is full; try again shortly", retry_after=self.max_skew
            )
