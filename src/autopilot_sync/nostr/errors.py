"""Every failure the Nostr package can report: one exception type per family, each with a closed code enum.

Callers branch on `error.code` (an enum member whose value is a stable, machine-readable string), never on message
text; each is a `contract.errors.CodedError`, whose `str()` is `<code>: <message>`. The control service turns
`NostrAuthError.code.value` into its 401 response body, so those values are part of the public contract and are
listed in `docs/nostr.md`.
"""

from __future__ import annotations

import enum

from autopilot_sync.contract.errors import CodedError


class NostrError(Exception):
    """Base of every error raised by `autopilot_sync.nostr`, so a caller can catch the whole package at once."""


class KeyErrorCode(enum.Enum):
    """Why a key, its text form or its file was refused."""

    INVALID_HEX = "invalid_hex"
    INVALID_KEY = "invalid_key"
    INVALID_BECH32 = "invalid_bech32"
    WRONG_PREFIX = "wrong_prefix"
    INSECURE_FILE = "insecure_file"
    FILE_ERROR = "file_error"


class NostrKeyError(CodedError[KeyErrorCode], NostrError, ValueError):
    """A secret or public key that cannot be used: bad encoding, not a valid curve point, or an unsafe key file."""


class EventErrorCode(enum.Enum):
    """Why a NIP-01 event was refused: a shape problem found by parsing, or a failed integrity check."""

    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    UNKNOWN_FIELD = "unknown_field"
    WRONG_TYPE = "wrong_type"
    INVALID_HEX = "invalid_hex"
    OUT_OF_RANGE = "out_of_range"
    INVALID_TEXT = "invalid_text"
    BAD_ID = "bad_id"
    BAD_SIGNATURE = "bad_signature"


class NostrEventError(CodedError[EventErrorCode], NostrError, ValueError):
    """An event that is malformed, or whose id or Schnorr signature does not match its fields.

    `field` names the offending event field when there is one, so the message can point at it.
    """

    def __init__(self, code: EventErrorCode, message: str, *, field: str | None = None) -> None:
        super().__init__(code, message)
        self.field = field


class AuthErrorCode(enum.Enum):
    """Why a NIP-98 `Authorization: Nostr ...` header was refused (the table in `docs/nostr.md`)."""

    MISSING = "missing"
    MALFORMED = "malformed"
    BAD_KIND = "bad_kind"
    EXPIRED = "expired"
    WRONG_URL = "wrong_url"
    WRONG_METHOD = "wrong_method"
    WRONG_PAYLOAD = "wrong_payload"
    BAD_SIGNATURE = "bad_signature"
    BAD_ID = "bad_id"
    REPLAYED = "replayed"


class NostrAuthError(CodedError[AuthErrorCode], NostrError):
    """A NIP-98 HTTP authorization that does not prove who sent this request; the server answers 401."""


class RelayAuthErrorCode(enum.Enum):
    """Why a NIP-42 relay authentication event (kind 22242) was refused."""

    MALFORMED = "malformed"
    BAD_KIND = "bad_kind"
    EXPIRED = "expired"
    WRONG_RELAY = "wrong_relay"
    WRONG_CHALLENGE = "wrong_challenge"
    BAD_SIGNATURE = "bad_signature"
    BAD_ID = "bad_id"


class RelayAuthError(CodedError[RelayAuthErrorCode], NostrError):
    """A NIP-42 `AUTH` event that does not answer this relay's challenge for the key that signed it."""
