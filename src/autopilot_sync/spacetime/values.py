"""Python values for the SATS types that have a meaning beyond their shape.

Identity and ConnectionId are integers on the wire (u256 / u128, little-endian) but people read them as big-endian
hex; Timestamp and TimeDuration are microseconds. Wrapping them keeps those conventions in one place.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

_U256_MAX = (1 << 256) - 1
_U128_MAX = (1 << 128) - 1


@dataclass(frozen=True, slots=True, order=True)
class Identity:
    """A 256-bit identity; `hex` is the big-endian form users see (it starts with `c200` for derived identities)."""

    value: int

    def __post_init__(self) -> None:
        if not 0 <= self.value <= _U256_MAX:
            raise ValueError("identity out of u256 range")

    @classmethod
    def from_hex(cls, text: str) -> Identity:
        """Parse 64 hex digits (an optional `0x` prefix is accepted)."""
        digits = text[2:] if text.startswith("0x") else text
        if len(digits) != 64:
            raise ValueError(f"identity hex must have 64 digits, got {len(digits)}")
        return cls(int(digits, 16))

    @classmethod
    def from_be_bytes(cls, data: bytes) -> Identity:
        """Build from the 32 big-endian bytes."""
        if len(data) != 32:
            raise ValueError("identity must be 32 bytes")
        return cls(int.from_bytes(data, "big"))

    @property
    def hex(self) -> str:
        """64 lowercase hex digits, big-endian."""
        return f"{self.value:064x}"

    def to_be_bytes(self) -> bytes:
        """The 32 big-endian bytes."""
        return self.value.to_bytes(32, "big")

    def __str__(self) -> str:
        return self.hex


@dataclass(frozen=True, slots=True, order=True)
class ConnectionId:
    """A 128-bit connection id chosen by the client (or the host) for one WebSocket session."""

    value: int

    def __post_init__(self) -> None:
        if not 0 <= self.value <= _U128_MAX:
            raise ValueError("connection id out of u128 range")

    @classmethod
    def from_hex(cls, text: str) -> ConnectionId:
        """Parse 32 hex digits, big-endian (the `connection_id` query parameter form)."""
        if len(text) != 32:
            raise ValueError(f"connection id hex must have 32 digits, got {len(text)}")
        return cls(int(text, 16))

    @property
    def hex(self) -> str:
        """32 lowercase hex digits, big-endian."""
        return f"{self.value:032x}"

    def __str__(self) -> str:
        return self.hex


@dataclass(frozen=True, slots=True, order=True)
class Timestamp:
    """Microseconds since the Unix epoch (i64)."""

    micros: int

    @classmethod
    def now(cls) -> Timestamp:
        """The current wall-clock time."""
        return cls(time.time_ns() // 1000)

    def to_datetime(self) -> dt.datetime:
        """As an aware UTC datetime."""
        return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=self.micros)

    def isoformat(self) -> str:
        """RFC 3339 text with microseconds, as the real host prints timestamps."""
        return self.to_datetime().isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True, order=True)
class TimeDuration:
    """A signed duration in microseconds (i64)."""

    micros: int


@dataclass(frozen=True, slots=True)
class SumValue:
    """A value of a sum type: the variant's tag and its payload (`()` for unit variants)."""

    tag: int
    value: Any = ()
