"""The one retry delay of the project: capped exponential backoff with full jitter.

`delay(attempt)` is uniform in `[0, min(cap, base * 2**attempt)]`. Full jitter (rather than a fixed or equal-jitter
delay) spreads the retries of many clients or streams after one outage, so a recovering service is not hit by all
of them at the same instant (AWS Architecture Blog, "Exponential Backoff and Jitter"). The SDK's reconnects
(`client.reconnect.BackoffPolicy`) and the runtime's publish retries (`runtime.publisher`) both wait this way.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Backoff"]

#: Attempts past this give the same ceiling (2**62 overflows no float, and the cap is long reached).
_MAX_EXPONENT = 62


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with full jitter: `base` seconds is the first ceiling, `cap` the longest delay."""

    base: float
    cap: float

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base:
            raise ValueError("backoff needs 0 < base <= cap")

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the delay before retry number `attempt` (0 = the first retry)."""
        return float(min(self.cap, self.base * 2.0 ** min(attempt, _MAX_EXPONENT)))

    def delay(self, attempt: int, uniform: Callable[[float, float], float] = random.uniform) -> float:
        """A random delay in `[0, ceiling(attempt)]`; `uniform` is the draw (a seeded `Random().uniform` replays)."""
        return float(uniform(0.0, self.ceiling(attempt)))
