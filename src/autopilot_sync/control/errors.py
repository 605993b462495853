"""Every refusal the control service can answer, in one table: the code, its HTTP status and what it means.

Clients branch on `error` (a stable string), never on `message`. The NIP-98 codes are the values of
`autopilot_sync.nostr.AuthErrorCode`, reused unchanged so a client sees the same code whichever layer refused it;
the table is mirrored in `docs/control.md` (a test checks the two agree).
"""

from __future__ import annotations

import enum

from autopilot_sync.contract.errors import CodedError
from autopilot_sync.nostr.errors import AuthErrorCode


class ControlErrorCode(enum.Enum):
    """Why `POST /api/sync/token` refused to mint; the value is the JSON `error` field."""

    # 401: the NIP-98 proof does not prove who sent this request (AuthErrorCode values, unchanged).
    MISSING = AuthErrorCode.MISSING.value
    MALFORMED = AuthErrorCode.MALFORMED.value
    BAD_KIND = AuthErrorCode.BAD_KIND.value
    EXPIRED = AuthErrorCode.EXPIRED.value
    WRONG_URL = AuthErrorCode.WRONG_URL.value
    WRONG_METHOD = AuthErrorCode.WRONG_METHOD.value
    WRONG_PAYLOAD = AuthErrorCode.WRONG_PAYLOAD.value
    BAD_SIGNATURE = AuthErrorCode.BAD_SIGNATURE.value
    BAD_ID = AuthErrorCode.BAD_ID.value
    REPLAYED = AuthErrorCode.REPLAYED.value
    # 400: the proof is good but the request body is not a valid token request.
    INVALID_JSON = "invalid_json"
    INVALID_BODY = "invalid_body"
    INVALID_TTL = "invalid_ttl"
    UNKNOWN_SCOPE = "unknown_scope"
    INVALID_STREAM = "invalid_stream"
    INVALID_CLIENT_KIND = "invalid_client_kind"
    # 403: the key proved who it is, but policy does not grant what it asked for.
    SCOPE_NOT_ALLOWED = "scope_not_allowed"
    STREAM_NOT_ALLOWED = "stream_not_allowed"
    # 413: the body is larger than any token request can be.
    BODY_TOO_LARGE = "body_too_large"
    # 429: the key asks too often (its rate, or its share of the replay memory); `Retry-After` says when to retry.
    RATE_LIMITED = "rate_limited"
    # 503: the replay memory is full (many keys at once); `Retry-After` says when to retry.
    BUSY = "busy"

    @property
    def status(self) -> int:
        """The HTTP status this refusal is answered with."""
        return _STATUS[self]

    @property
    def meaning(self) -> str:
        """One line for people: when this code is returned (the docs table is generated from it)."""
        return _MEANING[self]

    @classmethod
    def from_auth(cls, code: AuthErrorCode) -> ControlErrorCode:
        """The control code for a NIP-98 refusal (same string)."""
        return cls(code.value)


_STATUS: dict[ControlErrorCode, int] = {
    **{ControlErrorCode(code.value): 401 for code in AuthErrorCode},
    ControlErrorCode.INVALID_JSON: 400,
    ControlErrorCode.INVALID_BODY: 400,
    ControlErrorCode.INVALID_TTL: 400,
    ControlErrorCode.UNKNOWN_SCOPE: 400,
    ControlErrorCode.INVALID_STREAM: 400,
    ControlErrorCode.INVALID_CLIENT_KIND: 400,
    ControlErrorCode.SCOPE_NOT_ALLOWED: 403,
    ControlErrorCode.STREAM_NOT_ALLOWED: 403,
    ControlErrorCode.BODY_TOO_LARGE: 413,
    ControlErrorCode.RATE_LIMITED: 429,
    ControlErrorCode.BUSY: 503,
}

_MEANING: dict[ControlErrorCode, str] = {
    ControlErrorCode.MISSING: "no `Authorization` header",
    ControlErrorCode.MALFORMED: "not `Nostr <base64 event>`, bad base64/JSON, or a malformed event or tag",
    ControlErrorCode.BAD_KIND: "the event is not kind 27235",
    ControlErrorCode.EXPIRED: "`created_at` is further from the server clock than the allowed skew (60 s by default)",
    ControlErrorCode.WRONG_URL: "no `u` tag, or it is not exactly `<public_url>/api/sync/token` (plus the query)",
    ControlErrorCode.WRONG_METHOD: "no `method` tag, or it is not `POST`",
    ControlErrorCode.WRONG_PAYLOAD: "the `payload` tag is missing or is not the sha256 hex of the body",
    ControlErrorCode.BAD_SIGNATURE: "the Schnorr signature does not verify for `pubkey`",
    ControlErrorCode.BAD_ID: "`id` is not the sha256 of the serialized event",
    ControlErrorCode.REPLAYED: "this event id was already used",
    ControlErrorCode.INVALID_JSON: "the body is not a UTF-8 JSON object",
    ControlErrorCode.INVALID_BODY: "a field is missing, unknown, or of the wrong type",
    ControlErrorCode.INVALID_TTL: "`ttl_seconds` is outside the configured bounds",
    ControlErrorCode.UNKNOWN_SCOPE: "a requested scope is not one of the four sync scopes",
    ControlErrorCode.INVALID_STREAM: "a stream entry is not a stream id, a `prefix*` pattern or `*`",
    ControlErrorCode.INVALID_CLIENT_KIND: "`client_kind` is not 1-32 of `a-z 0-9 _ -` starting with a letter",
    ControlErrorCode.SCOPE_NOT_ALLOWED: "the key may not have a requested scope (never silently narrowed)",
    ControlErrorCode.STREAM_NOT_ALLOWED: (
        "the policy does not give the key the requested scopes on a requested stream (never silently narrowed)"
    ),
    ControlErrorCode.BODY_TOO_LARGE: "the body is over 64 KiB",
    ControlErrorCode.RATE_LIMITED: "this key asks too often (its per-minute rate, or its share of the replay memory)",
    ControlErrorCode.BUSY: "the replay memory is full of other keys' proofs; retry after `Retry-After` seconds",
}


class ControlError(CodedError[ControlErrorCode]):
    """A refusal on its way to the client as `{"error": code, "message": message}` with `code.status`."""

    def __init__(self, code: ControlErrorCode, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(code, message)
        self.retry_after = retry_after
        """Seconds after which the same request may succeed (the `Retry-After` header), for 429 and 503."""

    def body(self) -> dict[str, str]:
        """The JSON response body."""
        return {"error": self.code.value, "message": self.message}
