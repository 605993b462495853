"""Strict lowercase-hex decoding, the only hex form NIP-01 allows for ids, keys and signatures.

`bytes.fromhex` alone is too lenient for that (it accepts upper case and whitespace), and two spellings of one key
would give two different event ids for one signer.
"""

from __future__ import annotations

import re

_LOWER_HEX = re.compile(r"[0-9a-f]*")


def decode_lower_hex(text: str, length: int) -> bytes | None:
    """Return the `length` bytes spelled by `text`, or None unless it is exactly `2 * length` lowercase hex digits."""
    if len(text) != 2 * length or _LOWER_HEX.fullmatch(text) is None:
        return None
    return bytes.fromhex(text)
