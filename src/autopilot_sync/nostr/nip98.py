"""NIP-98 HTTP auth: a signed kind 27235 event, base64 in `Authorization: Nostr <...>`, proving who sent a request.

The control service (`POST /api/sync/token`) calls `verify_http_auth` and puts only the pubkey it returns into the
session claims; that is the single path by which a Nostr identity enters the system. The checks, their order and
their error codes are documented in `docs/nostr.md`.

Payload rule (NIP-98 leaves it to the server): a request with a non-empty body must carry a `payload` tag equal to
the sha256 hex of that body, otherwise the body could be swapped under a captured header; a `payload` tag, when
present, must match the body (an absent body counts as empty).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from autopilot_sync.nostr.errors import AuthErrorCode, EventErrorCode, NostrAuthError, NostrEventError
from autopilot_sync.nostr.event import Event, sign_event
from autopilot_sync.nostr.keys import PublicKey, SecretKey
from autopilot_sync.nostr.replay import Admission, ReplayGuard

HTTP_AUTH_KIND = 27235
AUTH_SCHEME = "Nostr"
#: NIP-98's suggested window for `created_at`, in seconds either side of the server's clock.
DEFAULT_MAX_SKEW = 60
#: Longest Authorization header we decode; a kind 27235 event with a long URL is well under 8 KiB.
MAX_HEADER_LENGTH = 16 * 1024


def payload_hash(body: bytes) -> str:
    """The `payload` tag value for a request body: lowercase hex sha256."""
    return hashlib.sha256(body).hexdigest()


def build_http_auth_event(
    secret: SecretKey,
    *,
    url: str,
    method: str,
    created_at: int,
    body: bytes | None = None,
) -> Event:
    """Sign a kind 27235 event for one request: `u` = the exact absolute URL, `method`, and `payload` if a body."""
    tags: list[list[str]] = [["u", url], ["method", method]]
    if body:
        tags.append(["payload", payload_hash(body)])
    return sign_event(secret, kind=HTTP_AUTH_KIND, created_at=created_at, tags=tags, content="")


def encode_authorization_header(event: Event) -> str:
    """The `Authorization` header value: `Nostr <base64 of the event JSON>` (standard alphabet, padded)."""
    encoded = base64.b64encode(event.to_json().encode("utf-8")).decode("ascii")
    return f"{AUTH_SCHEME} {encoded}"


def decode_authorization_header(header: str | None) -> Event:
    """Parse an `Authorization` header into an event (shape checked, authenticity not yet).

    Raises `NostrAuthError`: `missing` for an absent or blank header; `malformed` for another scheme, bad base64,
    invalid JSON or an event that breaks NIP-01's shape rules.
    """
    if header is None or not header.strip():
        raise NostrAuthError(AuthErrorCode.MISSING, "no Authorization header")
    if len(header) > MAX_HEADER_LENGTH:
        raise NostrAuthError(AuthErrorCode.MALFORMED, f"Authorization header longer than {MAX_HEADER_LENGTH} bytes")
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != AUTH_SCHEME.lower():  # RFC 9110: the auth-scheme is case-insensitive
        raise NostrAuthError(AuthErrorCode.MALFORMED, f"Authorization scheme must be {AUTH_SCHEME!r}")
    credentials = credentials.strip()
    if not credentials:
        raise NostrAuthError(AuthErrorCode.MALFORMED, "Authorization: Nostr carries no event")
    try:
        raw = base64.b64decode(credentials, validate=True)
    except (binascii.Error, ValueError):
        raise NostrAuthError(AuthErrorCode.MALFORMED, "Authorization credentials are not valid base64") from None
    try:
        return Event.from_json(raw)
    except NostrEventError as exc:
        raise NostrAuthError(AuthErrorCode.MALFORMED, f"not a NIP-01 event: {exc.message}") from None


def _single_tag_value(event: Event, name: str) -> str | None:
    tags = event.tags_named(name)
    if not tags:
        return None
    if len(tags) > 1:
        raise NostrAuthError(AuthErrorCode.MALFORMED, f"more than one {name!r} tag")
    if len(tags[0]) < 2:
        raise NostrAuthError(AuthErrorCode.MALFORMED, f"{name!r} tag has no value")
    return tags[0][1]


def verify_http_auth_event(
    event: Event,
    *,
    url: str,
    method: str,
    body: bytes | None,
    now: int,
    max_skew: int = DEFAULT_MAX_SKEW,
    replay_guard: ReplayGuard | None = None,
) -> PublicKey:
    """Run the NIP-98 checks on an already decoded event and return the pubkey that signed it.

    Order: kind, created_at, `u`, `method`, `payload`, id, signature, replay. Cheap field checks come first; the
    replay guard is consulted last, so only a correctly signed event can ever occupy a slot in it.
    """
    if event.kind != HTTP_AUTH_KIND:
        raise NostrAuthError(AuthErrorCode.BAD_KIND, f"kind must be {HTTP_AUTH_KIND}, got {event.kind}")
    if abs(now - event.created_at) > max_skew:
        raise NostrAuthError(
            AuthErrorCode.EXPIRED,
            f"created_at {event.created_at} is {event.created_at - now:+d} s from the server clock "
            f"(allowed: within {max_skew} s)",
        )
    signed_url = _single_tag_value(event, "u")
    if signed_url is None:
        raise NostrAuthError(AuthErrorCode.WRONG_URL, "no 'u' tag")
    if signed_url != url:
        raise NostrAuthError(AuthErrorCode.WRONG_URL, f"'u' tag {signed_url!r} is not the request URL {url!r}")
    signed_method = _single_tag_value(event, "method")
    if signed_method is None:
        raise NostrAuthError(AuthErrorCode.WRONG_METHOD, "no 'method' tag")
    if signed_method != method:
        raise NostrAuthError(
            AuthErrorCode.WRONG_METHOD, f"'method' tag {signed_method!r} is not the request method {method!r}"
        )
    signed_payload = _single_tag_value(event, "payload")
    actual_body = body or b""
    if signed_payload is None:
        if actual_body:
            raise NostrAuthError(AuthErrorCode.WRONG_PAYLOAD, "the request has a body but no 'payload' tag")
    elif not hmac.compare_digest(signed_payload.encode("utf-8"), payload_hash(actual_body).encode("ascii")):
        raise NostrAuthError(AuthErrorCode.WRONG_PAYLOAD, "'payload' tag is not the sha256 hex of the request body")
    try:
        signer = event.verify()
    except NostrEventError as exc:
        code = AuthErrorCode.BAD_ID if exc.code is EventErrorCode.BAD_ID else AuthErrorCode.BAD_SIGNATURE
        raise NostrAuthError(code, exc.message) from None
    if replay_guard is not None:
        admission = replay_guard.admit(event.id, key=event.pubkey, usable_until=event.created_at + max_skew, now=now)
        if admission is not Admission.ACCEPTED:
            raise NostrAuthError(AuthErrorCode.REPLAYED, _REPLAY_REASON[admission])
    return signer


_REPLAY_REASON = {
    Admission.REPLAYED: "this event was already used",
    Admission.KEY_FULL: "this key has too many recent proofs in the replay memory",
    Admission.FULL: "the replay memory is full",
}


def verify_http_auth(
    header: str | None,
    url: str,
    method: str,
    body: bytes | None,
    now: int,
    max_skew: int = DEFAULT_MAX_SKEW,
    *,
    replay_guard: ReplayGuard | None = None,
) -> PublicKey:
    """Verify an `Authorization: Nostr ...` header for this exact request; return the proven pubkey.

    `url` must be the absolute URL the client addressed, including the query string, as the server's public base URL
    plus the request target (not the address a reverse proxy forwarded to). Raises `NostrAuthError`.
    """
    event = decode_authorization_header(header)
    return verify_http_auth_event(
        event, url=url, method=method, body=body, now=now, max_skew=max_skew, replay_guard=replay_guard
    )
