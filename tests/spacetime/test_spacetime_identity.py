"""Identities derived from token claims match SpacetimeDB's, byte for byte."""

from __future__ import annotations

import blake3
from hypothesis import given
from hypothesis import strategies as st

from autopilot_sync.spacetime.identity import has_valid_checksum, identity_from_claims
from autopilot_sync.spacetime.values import Identity


def test_known_vector_from_spacetimedb_csharp_tests() -> None:
    # crates/bindings-csharp/Runtime.Tests/JwtClaimsTest.cs: iss "example.com", sub "123".
    identity = identity_from_claims("example.com", "123")
    assert identity.hex == "c200ef884364c1a99be0298dc68f2004e6b97c09d1b1658b7db22f51fb662059"


def test_layout_is_prefix_checksum_then_hash_big_endian() -> None:
    raw = identity_from_claims("localhost", "alice").to_be_bytes()
    h = blake3.blake3(b"localhost|alice").digest()[:26]
    assert raw[:2] == b"\xc2\x00"
    assert raw[6:] == h
    assert raw[2:6] == blake3.blake3(b"\xc2\x00" + h).digest()[:4]


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_every_derived_identity_starts_c200_and_has_a_valid_checksum(iss: str, sub: str) -> None:
    identity = identity_from_claims(iss, sub)
    assert identity.hex.startswith("c200")
    assert has_valid_checksum(identity)


def test_issuer_and_subject_are_not_interchangeable() -> None:
    assert identity_from_claims("a|b", "c") == identity_from_claims("a", "b|c")  # as upstream: the separator is bare
    assert identity_from_claims("a", "b") != identity_from_claims("b", "a")


def test_tampered_identity_fails_the_checksum() -> None:
    identity = identity_from_claims("example.com", "123")
    assert not has_valid_checksum(Identity(identity.value ^ 1))
    assert not has_valid_checksum(Identity(0))
