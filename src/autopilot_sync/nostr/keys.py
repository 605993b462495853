"""Nostr keys: a secp256k1 secret key and its BIP-340 x-only public key, in hex and NIP-19 forms.

Both types validate on construction (a secret in [1, n-1], a public key that is a point on the curve), so every
`PublicKey` that exists can be used to verify and every `SecretKey` can sign.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from autopilot_sync.nostr.errors import KeyErrorCode, NostrKeyError
from autopilot_sync.nostr.hexstr import decode_lower_hex
from autopilot_sync.nostr.nip19 import Bech32Prefix, decode_bech32, encode_bech32

KEY_LENGTH = 32
SIGNATURE_LENGTH = 64


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An x-only secp256k1 public key (32 bytes): the identity a Nostr signature proves.

    Held as bytes, shown as 64 lowercase hex digits (`hex`) in events and presence, as `npub1...` to people.
    """

    data: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes) or len(self.data) != KEY_LENGTH:
            raise NostrKeyError(KeyErrorCode.INVALID_KEY, "a public key is exactly 32 bytes")
        if not _on_curve(self.data):
            raise NostrKeyError(KeyErrorCode.INVALID_KEY, "not the x coordinate of a secp256k1 point")

    @classmethod
    def from_hex(cls, text: str) -> PublicKey:
        """Parse the 64-lowercase-hex-digit form used in NIP-01 events."""
        data = decode_lower_hex(text, KEY_LENGTH) if isinstance(text, str) else None
        if data is None:
            raise NostrKeyError(KeyErrorCode.INVALID_HEX, "a public key is 64 lowercase hex digits")
        return cls(data)

    @classmethod
    def from_npub(cls, text: str) -> PublicKey:
        """Parse a NIP-19 `npub1...` string."""
        return cls(decode_bech32(text, Bech32Prefix.NPUB))

    @classmethod
    def parse(cls, text: str) -> PublicKey:
        """Accept either form people paste: `npub1...` or 64 hex digits (NIP-19 asks clients to take both)."""
        if isinstance(text, str) and text.strip().lower().startswith("npub1"):
            return cls.from_npub(text)
        return cls.from_hex(text)

    @property
    def hex(self) -> str:
        """The lowercase hex form, as written in events and in presence rows."""
        return self.data.hex()

    @property
    def npub(self) -> str:
        """The NIP-19 `npub1...` form, for display only (never inside events)."""
        return _npub(self.data)

    def verify_schnorr(self, signature: bytes, message: bytes) -> bool:
        """True if `signature` is a valid BIP-340 signature by this key over the 32-byte `message`."""
        if len(signature) != SIGNATURE_LENGTH or len(message) != KEY_LENGTH:
            return False
        from coincurve import PublicKeyXOnly

        return bool(PublicKeyXOnly(self.data).verify(signature, message))

    def __str__(self) -> str:
        return self.hex


@dataclass(frozen=True, slots=True, repr=False)
class SecretKey:
    """A secp256k1 secret key (32 bytes) able to sign Nostr events.

    Its `repr` never shows the secret, so a key that ends up in a log line or a traceback does not leak.
    """

    data: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes) or len(self.data) != KEY_LENGTH:
            raise NostrKeyError(KeyErrorCode.INVALID_KEY, "a secret key is exactly 32 bytes")
        from coincurve import PrivateKey

        try:
            PrivateKey(self.data)
        except ValueError:
            raise NostrKeyError(KeyErrorCode.INVALID_KEY, "a secret key must be in [1, n-1] of secp256k1") from None

    @classmethod
    def generate(cls) -> SecretKey:
        """A fresh key from the operating system's CSPRNG (retrying in the ~2^-128 case of an invalid scalar)."""
        while True:
            try:
                return cls(os.urandom(KEY_LENGTH))
            except NostrKeyError:  # pragma: no cover - probability ~ 2**-128
                continue

    @classmethod
    def from_hex(cls, text: str) -> SecretKey:
        """Parse 64 lowercase hex digits."""
        data = decode_lower_hex(text, KEY_LENGTH) if isinstance(text, str) else None
        if data is None:
            raise NostrKeyError(KeyErrorCode.INVALID_HEX, "a secret key is 64 lowercase hex digits")
        return cls(data)

    @classmethod
    def from_nsec(cls, text: str) -> SecretKey:
        """Import a NIP-19 `nsec1...` string, the form other Nostr clients export."""
        return cls(decode_bech32(text, Bech32Prefix.NSEC))

    @classmethod
    def parse(cls, text: str) -> SecretKey:
        """Accept `nsec1...` or 64 hex digits."""
        if isinstance(text, str) and text.strip().lower().startswith("nsec1"):
            return cls.from_nsec(text)
        return cls.from_hex(text)

    def reveal_hex(self) -> str:
        """The secret as lowercase hex; named so every place that exposes the secret is easy to find."""
        return self.data.hex()

    def reveal_nsec(self) -> str:
        """The secret as NIP-19 `nsec1...`, for export to another client."""
        return encode_bech32(Bech32Prefix.NSEC, self.data)

    def public_key(self) -> PublicKey:
        """The x-only public key (BIP-340) that verifies this key's signatures."""
        from coincurve import PrivateKey

        return PublicKey(PrivateKey(self.data).public_key_xonly.format())

    def sign_schnorr(self, message: bytes, aux_randomness: bytes | None = None) -> bytes:
        """A 64-byte BIP-340 signature over the 32-byte `message`.

        Fresh auxiliary randomness is used unless given, as BIP-340 recommends (it hardens against fault and
        side-channel attacks); passing 32 fixed bytes makes the signature reproducible for tests.
        """
        if len(message) != KEY_LENGTH:
            raise ValueError("BIP-340 signs a 32-byte message (the event id)")
        aux = os.urandom(32) if aux_randomness is None else aux_randomness
        if len(aux) != 32:
            raise ValueError("BIP-340 auxiliary randomness is 32 bytes")
        from coincurve import PrivateKey

        return bytes(PrivateKey(self.data).sign_schnorr(message, aux))

    def __repr__(self) -> str:
        return f"SecretKey(<secret>, public_key={self.public_key().hex})"


@functools.lru_cache(maxsize=4096)
def _npub(data: bytes) -> str:
    """Bech32 costs ~50 µs in Python and the host's presence row needs it at every connect: the same keys reconnect,
    so remember the recent ones (and their rows share one string)."""
    return encode_bech32(Bech32Prefix.NPUB, data)


@functools.lru_cache(maxsize=4096)
def _on_curve(data: bytes) -> bool:
    """Whether 32 bytes are the x coordinate of a secp256k1 point. The check (libsecp256k1 through coincurve, ~25 µs
    with its Python around it) ran for the presence row's key at every connect; the same keys reconnect, so remember
    the recent answers (a reconnect storm: ~3% of the host's CPU per client, docs/performance.md "Round 5 — storm2")."""
    from coincurve import PublicKeyXOnly  # with the first key: loading libsecp256k1 is ~0.04 s of CPU

    try:
        PublicKeyXOnly(data)
    except ValueError:
        return False
    return True
