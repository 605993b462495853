"""A bounded memory of recently accepted event ids, so one signed NIP-98 header authorizes one request.

A NIP-98 event stays inside the clock-skew window for up to `2 * max_skew` seconds (created up to `max_skew` in the
future, accepted until `max_skew` in the past); anyone who sees the header in that time could send it again. The
guard remembers each accepted id for `window` seconds (default 120 = 2 x 60), which covers that whole life.
"""

from __future__ import annotations

from collections import OrderedDict

#: Default memory window: twice the default NIP-98 skew of 60 s.
DEFAULT_REPLAY_WINDOW = 120
#: Default bound on remembered ids; at 120 s that is over 800 fresh authorizations per second.
DEFAULT_MAX_ENTRIES = 100_000


class ReplayGuard:
    """Accepts each event id at most once while it is remembered; memory is bounded by `max_entries`.

    When full of unexpired ids, new ids are refused (fail closed) rather than evicting one whose replay would then
    succeed; capacity should be sized well above the legitimate request rate times the window. Pure and clock-free:
    the caller passes `now` (seconds), which keeps it deterministic to test. Not thread-safe: use it from one event
    loop, or wrap it in a lock.
    """

    def __init__(self, window: int = DEFAULT_REPLAY_WINDOW, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if window <= 0 or max_entries <= 0:
            raise ValueError("window and max_entries must be positive")
        self.window = window
        self.max_entries = max_entries
        self._expiry: OrderedDict[str, float] = OrderedDict()  # insertion order == expiry order (constant window)

    def __len__(self) -> int:
        return len(self._expiry)

    def _purge(self, now: float) -> None:
        while self._expiry:
            event_id, expires_at = next(iter(self._expiry.items()))
            if expires_at > now:
                break
            del self._expiry[event_id]

    def accept(self, event_id: str, now: float) -> bool:
        """Record `event_id` and return True the first time it is seen within the window; False otherwise.

        Also False when the guard is full of unexpired ids (fail closed). Call it only after the event's signature
        has been verified, so forged events cannot fill the memory or block a legitimate id.
        """
        self._purge(now)
        if event_id in self._expiry:
            return False
        if len(self._expiry) >= self.max_entries:
            return False
        self._expiry[event_id] = now + self.window
        return True

    def is_full(self, now: float) -> bool:
        """True when no new id can be accepted at `now`; lets a server tell overload from a replay."""
        self._purge(now)
        return len(self._expiry) >= self.max_entries
