"""Keys: hex and NIP-19 forms round-trip, the NIP-19 spec's own vectors decode, invalid keys never exist."""

from __future__ import annotations

import pytest

from autopilot_sync.nostr import KeyErrorCode, NostrKeyError, PublicKey, SecretKey
from autopilot_sync.nostr.nip19 import Bech32Prefix, decode_bech32, encode_bech32

# The examples given in NIP-19 itself.
NIP19_NPUB_VECTORS = [
    ("npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptg",
     "7e7e9c42a91bfef19fa929e5fda1b72e0ebc1a4c1141673e2794234d86addf4e"),
    ("npub180cvv07tjdrrgpa0j7j7tmnyl2yr6yr7l8j4s3evf6u64th6gkwsyjh6w6",
     "3bf0c63fcb93463407af97a5e5ee64fa883d107ef9e558472c4eb9aaaefa459d"),
]  # fmt: skip
NIP19_NSEC = "nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5"
NIP19_NSEC_HEX = "67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa"

# BIP-340 test vector 0: secret key 3, zero aux randomness, zero message.
BIP340_SECRET = "0000000000000000000000000000000000000000000000000000000000000003"
BIP340_PUBKEY = "f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9"
BIP340_SIG = (
    "e907831f80848d1069a5371b402410364bdf1c5f8307b0084c55f1ce2dca8215"
    "25f66a4a85ea8b71e482a74f382d2ce5ebeee8fdb2172f477df4900d310536c0"
)


@pytest.mark.parametrize(("npub", "hex_key"), NIP19_NPUB_VECTORS)
def test_nip19_npub_vectors_decode_and_encode_both_ways(npub: str, hex_key: str) -> None:
    key = PublicKey.from_npub(npub)
    assert key.hex == hex_key
    assert PublicKey.from_hex(hex_key).npub == npub
    assert PublicKey.parse(npub) == PublicKey.parse(hex_key)


def test_nip19_nsec_vector_decodes_and_encodes_both_ways() -> None:
    key = SecretKey.from_nsec(NIP19_NSEC)
    assert key.reveal_hex() == NIP19_NSEC_HEX
    assert SecretKey.from_hex(NIP19_NSEC_HEX).reveal_nsec() == NIP19_NSEC
    assert SecretKey.parse(NIP19_NSEC) == SecretKey.parse(NIP19_NSEC_HEX)


def test_uppercase_bech32_is_accepted_as_bech32_allows() -> None:
    npub, hex_key = NIP19_NPUB_VECTORS[0]
    assert PublicKey.from_npub(npub.upper()).hex == hex_key


def test_an_nsec_is_never_taken_for_an_npub_or_the_reverse() -> None:
    with pytest.raises(NostrKeyError) as err:
        PublicKey.from_npub(NIP19_NSEC)
    assert err.value.code is KeyErrorCode.WRONG_PREFIX
    with pytest.raises(NostrKeyError) as err:
        SecretKey.from_nsec(NIP19_NPUB_VECTORS[0][0])
    assert err.value.code is KeyErrorCode.WRONG_PREFIX


@pytest.mark.parametrize(
    "text",
    [
        NIP19_NPUB_VECTORS[0][0][:-1] + "q",  # checksum broken
        "npub1",  # no data
        "npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptG",  # mixed case
        "npub1" + "q" * 100,  # far too long
        encode_bech32(Bech32Prefix.NPUB, bytes(32))[:-6] + "qqqqqq",
    ],
)
def test_broken_bech32_is_refused(text: str) -> None:
    with pytest.raises(NostrKeyError) as err:
        PublicKey.from_npub(text)
    assert err.value.code is KeyErrorCode.INVALID_BECH32


def test_bech32_payload_of_wrong_length_is_refused() -> None:
    import bech32

    words = bech32.convertbits(bytes(31), 8, 5, True)
    assert words is not None
    short = bech32.bech32_encode("npub", words)
    with pytest.raises(NostrKeyError) as err:
        decode_bech32(short, Bech32Prefix.NPUB)
    assert err.value.code is KeyErrorCode.INVALID_BECH32


@pytest.mark.parametrize(
    "text",
    [
        NIP19_NPUB_VECTORS[0][1].upper(),  # NIP-01 hex is lowercase
        NIP19_NPUB_VECTORS[0][1][:-2],
        NIP19_NPUB_VECTORS[0][1] + "00",
        " " + NIP19_NPUB_VECTORS[0][1][1:],
        "zz" + NIP19_NPUB_VECTORS[0][1][2:],
    ],
)
def test_public_key_hex_must_be_64_lowercase_digits(text: str) -> None:
    with pytest.raises(NostrKeyError) as err:
        PublicKey.from_hex(text)
    assert err.value.code is KeyErrorCode.INVALID_HEX


def test_a_public_key_that_is_not_a_curve_point_cannot_exist() -> None:
    with pytest.raises(NostrKeyError) as err:
        PublicKey(b"\xff" * 32)
    assert err.value.code is KeyErrorCode.INVALID_KEY


@pytest.mark.parametrize("raw", [bytes(32), b"\xff" * 32, bytes(31)])
def test_a_secret_key_outside_the_curve_order_cannot_exist(raw: bytes) -> None:
    with pytest.raises(NostrKeyError) as err:
        SecretKey(raw)
    assert err.value.code is KeyErrorCode.INVALID_KEY


def test_generated_keys_are_distinct_and_round_trip() -> None:
    first, second = SecretKey.generate(), SecretKey.generate()
    assert first != second
    assert SecretKey.from_nsec(first.reveal_nsec()) == first
    assert PublicKey.from_npub(first.public_key().npub) == first.public_key()


def test_bip340_vector_0_signs_and_verifies() -> None:
    secret = SecretKey.from_hex(BIP340_SECRET)
    assert secret.public_key().hex == BIP340_PUBKEY
    signature = secret.sign_schnorr(bytes(32), aux_randomness=bytes(32))
    assert signature.hex() == BIP340_SIG
    assert secret.public_key().verify_schnorr(signature, bytes(32))
    assert not secret.public_key().verify_schnorr(signature, b"\x01" + bytes(31))


def test_secret_key_repr_never_shows_the_secret() -> None:
    secret = SecretKey.from_hex(NIP19_NSEC_HEX)
    assert NIP19_NSEC_HEX not in repr(secret)
    assert NIP19_NSEC not in repr(secret)
    assert secret.public_key().hex in repr(secret)
