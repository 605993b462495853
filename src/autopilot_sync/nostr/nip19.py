"""NIP-19 bech32 forms of bare 32-byte values (`npub`, `nsec`, `note`), for people to read and paste.

Only the bare forms are implemented: the TLV forms (`nprofile`, `nevent`, ...) carry relay hints this system has no
use for. NIP-19 uses original bech32, not bech32m, which is what the `bech32` library implements.
"""

from __future__ import annotations

import enum

import bech32

from autopilot_sync.nostr.errors import KeyErrorCode, NostrKeyError

#: Longest bare NIP-19 string we accept: a 32-byte payload gives 63 characters for `npub`/`nsec`/`note`.
MAX_BECH32_LENGTH = 90


class Bech32Prefix(enum.Enum):
    """Human-readable parts of the bare NIP-19 entities; each marks what the 32 bytes are."""

    NPUB = "npub"
    NSEC = "nsec"
    NOTE = "note"


def encode_bech32(prefix: Bech32Prefix, data: bytes) -> str:
    """Encode 32 bytes as the lowercase bech32 string with the given prefix."""
    if len(data) != 32:
        raise NostrKeyError(KeyErrorCode.INVALID_KEY, f"{prefix.value} payload must be 32 bytes, got {len(data)}")
    words = bech32.convertbits(data, 8, 5, True)
    if words is None:  # pragma: no cover - padding on encode cannot fail
        raise NostrKeyError(KeyErrorCode.INVALID_KEY, "cannot convert payload to 5-bit groups")
    result: str = bech32.bech32_encode(prefix.value, words)
    return result


def decode_bech32(text: str, expected: Bech32Prefix) -> bytes:
    """Decode a bare NIP-19 string, insisting on the expected prefix so an `nsec` is never taken for an `npub`."""
    if not isinstance(text, str) or len(text) > MAX_BECH32_LENGTH:
        raise NostrKeyError(KeyErrorCode.INVALID_BECH32, "not a bech32 string of a plausible length")
    hrp, words = bech32.bech32_decode(text.strip())
    if hrp is None or words is None:
        raise NostrKeyError(KeyErrorCode.INVALID_BECH32, "not valid bech32 (bad character, case mix or checksum)")
    if hrp != expected.value:
        raise NostrKeyError(KeyErrorCode.WRONG_PREFIX, f"expected a {expected.value!r} string, got {hrp!r}")
    data = bech32.convertbits(words, 5, 8, False)
    if data is None or len(data) != 32:
        raise NostrKeyError(KeyErrorCode.INVALID_BECH32, f"{hrp} payload is not exactly 32 bytes")
    return bytes(data)
