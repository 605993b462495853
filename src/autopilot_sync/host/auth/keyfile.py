"""The host key file's bytes: a new P-256 key written, and a stored one checked, without importing `cryptography`.

Why: `cryptography`'s import (its Rust bindings, the serialization and cipher modules) was ~0.03 s of the host's
~0.7 s of CPU to `ready`, paid at every start although the key signs or checks nothing until the first token
(docs/performance.md "Round 7 — startup4"). A start still creates the key and checks the stored one completely —
a damaged or unwritable key fails the start, not a request — but through this module: the file is the standard
PKCS#8 PEM of an EC P-256 private key (RFC 5915 inside RFC 5208), written in its short form, the private scalar
without the optional public point (OpenSSL and `cryptography` derive the point when they load it). Every scalar in
`[1, n)` is a valid P-256 key, so matching the exact bytes of that form and the scalar's range is the whole check.
Any other form (a file written by an older host, with the public point, or by another tool) is not judged here:
`scalar_of` answers None and the caller parses it fully with `cryptography` at start, as before.
"""

from __future__ import annotations

import base64
import secrets

#: The order n of P-256's base point (SEC 2 §2.4.2): a private key is a scalar in [1, n).
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

#: DER of PKCS#8 `PrivateKeyInfo` { version 0, AlgorithmIdentifier { id-ecPublicKey, prime256v1 }, OCTET STRING {
#: ECPrivateKey { version 1, OCTET STRING (32 bytes) } } } up to the 32 scalar bytes that end it.
_SHORT_PKCS8_PREFIX = bytes.fromhex("3041020100301306072a8648ce3d020106082a8648ce3d030107042730250201010420")
_SHORT_PKCS8_SIZE = len(_SHORT_PKCS8_PREFIX) + 32

_BEGIN = b"-----BEGIN PRIVATE KEY-----\n"
_END = b"-----END PRIVATE KEY-----\n"


def new_key_pem() -> tuple[int, bytes]:
    """A fresh private scalar from the operating system's CSPRNG, and its PKCS#8 PEM (short form)."""
    scalar = secrets.randbelow(P256_ORDER - 1) + 1
    text = base64.b64encode(_SHORT_PKCS8_PREFIX + scalar.to_bytes(32, "big"))
    lines = b"".join(text[start : start + 64] + b"\n" for start in range(0, len(text), 64))  # PEM's 64 per line
    return scalar, _BEGIN + lines + _END


def scalar_of(pem: bytes) -> int | None:
    """The private scalar of a PEM in exactly the short form `new_key_pem` writes, or None for any other bytes
    (another form, or damage: the caller then parses the file fully, which names what is wrong)."""
    if not (pem.startswith(_BEGIN) and pem.endswith(_END)):
        return None
    body = pem[len(_BEGIN) : -len(_END)]
    try:
        der = base64.b64decode(body.replace(b"\n", b""), validate=True)
    except ValueError:
        return None
    if len(der) != _SHORT_PKCS8_SIZE or not der.startswith(_SHORT_PKCS8_PREFIX):
        return None
    scalar = int.from_bytes(der[len(_SHORT_PKCS8_PREFIX) :], "big")
    return scalar if 0 < scalar < P256_ORDER else None
