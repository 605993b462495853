"""NIP-42 client authentication to a relay: a kind 22242 event answering the relay's challenge.

Used where a long-lived connection (rather than one HTTP request) must prove a Nostr identity: the server sends a
fresh challenge, the client signs `relay` + `challenge` tags, and the server checks them with `verify_relay_auth`.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from autopilot_sync.nostr.errors import EventErrorCode, NostrEventError, RelayAuthError, RelayAuthErrorCode
from autopilot_sync.nostr.event import Event, sign_event
from autopilot_sync.nostr.keys import PublicKey, SecretKey

RELAY_AUTH_KIND = 22242
#: NIP-42 suggests accepting `created_at` "within ~10 minutes" of the relay's clock.
DEFAULT_RELAY_AUTH_SKEW = 600

_DEFAULT_PORTS = {"ws": 80, "wss": 443, "http": 80, "https": 443}


def normalize_relay_url(url: str) -> str:
    """Compare relay URLs the way NIP-42 allows: scheme and host lowercased, default port and a bare `/` dropped."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return url
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    netloc = host if port is None or _DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"
    path = "" if parts.path in ("", "/") else parts.path
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{path}{query}"


def build_relay_auth_event(secret: SecretKey, *, relay_url: str, challenge: str, created_at: int) -> Event:
    """Sign the kind 22242 answer to `challenge` from the relay at `relay_url`."""
    return sign_event(
        secret,
        kind=RELAY_AUTH_KIND,
        created_at=created_at,
        tags=[["relay", relay_url], ["challenge", challenge]],
        content="",
    )


def _single_tag_value(event: Event, name: str) -> str:
    tags = event.tags_named(name)
    if len(tags) != 1 or len(tags[0]) < 2:
        raise RelayAuthError(RelayAuthErrorCode.MALFORMED, f"expected exactly one {name!r} tag with a value")
    return tags[0][1]


def verify_relay_auth(
    event: Event,
    *,
    relay_url: str,
    challenge: str,
    now: int,
    max_skew: int = DEFAULT_RELAY_AUTH_SKEW,
) -> PublicKey:
    """Check a NIP-42 `AUTH` event against this relay and the challenge it issued; return the proven pubkey.

    Raises `RelayAuthError`. The challenge comparison is constant-time, since challenges are bearer-like nonces.
    """
    if event.kind != RELAY_AUTH_KIND:
        raise RelayAuthError(RelayAuthErrorCode.BAD_KIND, f"kind must be {RELAY_AUTH_KIND}, got {event.kind}")
    if abs(now - event.created_at) > max_skew:
        raise RelayAuthError(RelayAuthErrorCode.EXPIRED, f"created_at is more than {max_skew} s from the relay clock")
    signed_relay = _single_tag_value(event, "relay")
    signed_challenge = _single_tag_value(event, "challenge")
    if normalize_relay_url(signed_relay) != normalize_relay_url(relay_url):
        raise RelayAuthError(RelayAuthErrorCode.WRONG_RELAY, f"'relay' tag {signed_relay!r} is not {relay_url!r}")
    if not hmac.compare_digest(signed_challenge.encode("utf-8"), challenge.encode("utf-8")):
        raise RelayAuthError(RelayAuthErrorCode.WRONG_CHALLENGE, "'challenge' tag does not match the issued challenge")
    try:
        return event.verify()
    except NostrEventError as exc:
        code = RelayAuthErrorCode.BAD_ID if exc.code is EventErrorCode.BAD_ID else RelayAuthErrorCode.BAD_SIGNATURE
        raise RelayAuthError(code, exc.message) from None
