"""Identity derivation from JWT claims, byte for byte as SpacetimeDB's `Identity::from_claims`.

A caller's identity is never chosen by the caller: it is a hash of the token's issuer and subject, so the same
OIDC user gets the same identity on our host and on a real SpacetimeDB host. Layout (big-endian, the hex users see):
`c2 00 ‖ checksum[4] ‖ h[26]` with `h = blake3(f"{iss}|{sub}")[:26]` and `checksum = blake3(b"\\xc2\\x00" + h)[:4]`.
"""

from __future__ import annotations

import blake3

from autopilot_sync.spacetime.values import Identity

#: The two leading bytes of every claims-derived identity (hex `c200`).
IDENTITY_PREFIX = b"\xc2\x00"
_HASH_LEN = 26
_CHECKSUM_LEN = 4


def _blake3(data: bytes) -> bytes:
    digest: bytes = blake3.blake3(data).digest()
    return digest


def identity_from_claims(issuer: str, subject: str) -> Identity:
    """The identity SpacetimeDB derives for a token with this `iss` and `sub`."""
    id_hash = _blake3(f"{issuer}|{subject}".encode())[:_HASH_LEN]
    checksum = _blake3(IDENTITY_PREFIX + id_hash)[:_CHECKSUM_LEN]
    return Identity.from_be_bytes(IDENTITY_PREFIX + checksum + id_hash)


def has_valid_checksum(identity: Identity) -> bool:
    """True when `identity` has the `c200` prefix and a correct checksum (i.e. it could come from claims)."""
    raw = identity.to_be_bytes()
    if raw[:2] != IDENTITY_PREFIX:
        return False
    return _blake3(IDENTITY_PREFIX + raw[6:])[:_CHECKSUM_LEN] == raw[2:6]
