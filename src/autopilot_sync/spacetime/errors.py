"""The one error raised when untrusted bytes cannot be decoded."""

from __future__ import annotations


class DecodeError(ValueError):
    """Bytes that are not a valid encoding of the expected type.

    Raised for truncated input, unknown sum tags, invalid bools, invalid UTF-8, lengths that exceed the input and
    trailing bytes. It is the only exception decoding untrusted input may raise, so a server can catch exactly this
    and close the offending connection without crashing.
    """
