"""The body of `POST /api/sync/token`, parsed strictly into a typed request (or a 400 naming the field).

Shape: `{"scopes": [..], "streams": [..], "ttl_seconds": int | null, "client_kind": str}`. `ttl_seconds` may be
omitted or null (the configured default); everything else is required and unknown fields are refused, so a typo
such as `"scope"` is an error rather than a token with different rights than the client believes it asked for.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from autopilot_sync.contract.scopes import Scope
from autopilot_sync.control.errors import ControlError, ControlErrorCode

#: Largest accepted body; a token request is a few hundred bytes.
MAX_BODY_BYTES = 64 * 1024
#: Most entries in `streams`, so a token stays small enough for a header or query string.
MAX_STREAMS = 64
#: A stream id (`run:123`, `worker/alpha`, ...) optionally followed by `*` for a prefix pattern; or `*` alone.
STREAM_PATTERN = re.compile(r"\*|[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}\*?")
#: `client_kind` goes into presence and metrics labels, so it is a short lowercase word.
CLIENT_KIND_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,31}")

_FIELDS = frozenset({"scopes", "streams", "ttl_seconds", "client_kind"})


@dataclass(frozen=True, slots=True)
class TtlBounds:
    """The lifetimes a client may ask for, from the settings."""

    minimum: int
    maximum: int
    default: int


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """A well-formed token request; whether the key may have these scopes is the policy's question."""

    scopes: tuple[Scope, ...]
    #: None when the client asked without `streams`: it gets what the policy gives
    streams: tuple[str, ...] | None
    ttl_seconds: int
    client_kind: str


def _fail(code: ControlErrorCode, message: str) -> ControlError:
    return ControlError(code, message)


def _string_list(body: dict[str, object], name: str) -> list[str]:
    value = body.get(name)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _fail(ControlErrorCode.INVALID_BODY, f"{name!r} must be an array of strings")
    return list(value)


def _scopes(body: dict[str, object]) -> tuple[Scope, ...]:
    names = _string_list(body, "scopes")
    if not names:
        raise _fail(ControlErrorCode.INVALID_BODY, "'scopes' must name at least one scope")
    known = {scope.value: scope for scope in Scope}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise _fail(
            ControlErrorCode.UNKNOWN_SCOPE,
            f"unknown scope {unknown[0]!r}; known scopes: {', '.join(scope.value for scope in Scope)}",
        )
    return tuple(dict.fromkeys(known[name] for name in names))


def _streams(body: dict[str, object]) -> tuple[str, ...] | None:
    if body.get("streams") is None:
        return None
    patterns = _string_list(body, "streams")
    if len(patterns) > MAX_STREAMS:
        raise _fail(ControlErrorCode.INVALID_STREAM, f"at most {MAX_STREAMS} entries in 'streams'")
    for pattern in patterns:
        if not STREAM_PATTERN.fullmatch(pattern):
            raise _fail(
                ControlErrorCode.INVALID_STREAM,
                f"stream {pattern!r} is not a stream id, a 'prefix*' pattern or '*' "
                "(ids: letters, digits and . _ : / @ -, at most 128 characters; '*' only at the end)",
            )
    return tuple(dict.fromkeys(patterns))


def _ttl(body: dict[str, object], bounds: TtlBounds) -> int:
    value = body.get("ttl_seconds")
    if value is None:
        return bounds.default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(ControlErrorCode.INVALID_BODY, "'ttl_seconds' must be an integer number of seconds or null")
    if not bounds.minimum <= value <= bounds.maximum:
        raise _fail(
            ControlErrorCode.INVALID_TTL,
            f"ttl_seconds {value} is outside {bounds.minimum}..{bounds.maximum}",
        )
    return value


def _client_kind(body: dict[str, object]) -> str:
    value = body.get("client_kind")
    if not isinstance(value, str):
        raise _fail(ControlErrorCode.INVALID_BODY, "'client_kind' must be a string such as 'desktop' or 'runtime'")
    if not CLIENT_KIND_PATTERN.fullmatch(value):
        raise _fail(
            ControlErrorCode.INVALID_CLIENT_KIND,
            f"client_kind {value!r} must be 1-32 characters of a-z, 0-9, '_' and '-', starting with a letter",
        )
    return value


def parse_token_request(body: bytes, bounds: TtlBounds) -> TokenRequest:
    """Parse and validate a request body; raises `ControlError` (400) naming the first problem."""
    try:
        decoded = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _fail(ControlErrorCode.INVALID_JSON, "the body must be a UTF-8 JSON object") from None
    if not isinstance(decoded, dict):
        raise _fail(ControlErrorCode.INVALID_JSON, f"the body must be a JSON object, got {type(decoded).__name__}")
    unknown = sorted(set(decoded) - _FIELDS)
    if unknown:
        raise _fail(
            ControlErrorCode.INVALID_BODY, f"unknown field {unknown[0]!r}; fields: {', '.join(sorted(_FIELDS))}"
        )
    for name in ("scopes", "client_kind"):
        if name not in decoded:
            raise _fail(ControlErrorCode.INVALID_BODY, f"missing field {name!r}")
    return TokenRequest(
        scopes=_scopes(decoded),
        streams=_streams(decoded),
        ttl_seconds=_ttl(decoded, bounds),
        client_kind=_client_kind(decoded),
    )
