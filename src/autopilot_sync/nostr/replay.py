"""A bounded memory of accepted NIP-98 event ids, so one signed header authorizes one request.

A NIP-98 event is acceptable while the server clock is within `max_skew` of its `created_at`, so it can be used
until `created_at + max_skew` — for an event created 60 s in the future that is 120 s after its first use. The
guard therefore remembers each id until exactly that moment (`usable_until`), not for a window counted from first
use: any earlier and the same header could be sent again while still inside the skew window.

Memory is bounded twice: in total (`max_entries`) and per signing key (`per_key_entries`), so one key — anyone can
make one — can take at most its own share and never lock every other key out. Both bounds fail closed: a full guard
refuses new ids rather than forgetting a live one, whose replay would then succeed.
"""

from __future__ import annotations

import enum
import heapq

#: Default bound on remembered ids in total.
DEFAULT_MAX_ENTRIES = 100_000
#: Default bound on ids one signing key may hold at once (its requests within one skew window).
DEFAULT_PER_KEY_ENTRIES = 256


class Admission(enum.Enum):
    """What the guard decided about one event id."""

    ACCEPTED = "accepted"
    """First use: remembered until it can no longer be accepted."""
    REPLAYED = "replayed"
    """The id is remembered: this header was used before."""
    KEY_FULL = "key_full"
    """The signing key already holds its whole share of the memory (it is sending too fast)."""
    FULL = "full"
    """The memory holds `max_entries` live ids (many keys at once)."""


class ReplayGuard:
    """Accepts each event id at most once while it could still verify; memory bounded in total and per key.

    Pure and clock-free: callers pass `now` (seconds), which keeps it deterministic to test. Not thread-safe: use it
    from one event loop. Admit only events whose signature was verified, so forged events can neither occupy memory
    nor spend another key's share.
    """

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES, per_key_entries: int = DEFAULT_PER_KEY_ENTRIES) -> None:
        if max_entries <= 0 or per_key_entries <= 0:
            raise ValueError("max_entries and per_key_entries must be positive")
        self.max_entries = max_entries
        self.per_key_entries = per_key_entries
        self._until: dict[str, tuple[float, str]] = {}  # event id -> (usable until, key)
        self._expiry: list[tuple[float, str]] = []  # heap of (usable until, event id)
        self._per_key: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._until)

    def held_by(self, key: str) -> int:
        """How many live ids `key` holds (after the last purge)."""
        return self._per_key.get(key, 0)

    def _purge(self, now: float) -> None:
        """Forget ids that can no longer be accepted: `usable_until` strictly before `now`."""
        while self._expiry and self._expiry[0][0] < now:
            _, event_id = heapq.heappop(self._expiry)
            _, key = self._until.pop(event_id)
            left = self._per_key[key] - 1
            if left:
                self._per_key[key] = left
            else:
                del self._per_key[key]

    def seen(self, event_id: str, now: float) -> bool:
        """Whether `event_id` is remembered now (a replay), without recording anything."""
        self._purge(now)
        return event_id in self._until

    def admit(self, event_id: str, *, key: str, usable_until: float, now: float) -> Admission:
        """Record `event_id`, signed by `key` and acceptable until `usable_until`, unless a bound says no."""
        self._purge(now)
        if event_id in self._until:
            return Admission.REPLAYED
        if self._per_key.get(key, 0) >= self.per_key_entries:
            return Admission.KEY_FULL
        if len(self._until) >= self.max_entries:
            return Admission.FULL
        self._until[event_id] = (usable_until, key)
        heapq.heappush(self._expiry, (usable_until, event_id))
        self._per_key[key] = self._per_key.get(key, 0) + 1
        return Admission.ACCEPTED
