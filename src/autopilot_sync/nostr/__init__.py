"""Nostr for autopilot-sync: keys (NIP-19), events (NIP-01), HTTP auth (NIP-98), relay auth (NIP-42).

Pure and synchronous except the key-file helpers. BIP-340 Schnorr comes from libsecp256k1 via coincurve. The one
rule the rest of the system relies on: a Nostr pubkey is only ever taken from a verified signature
(`Event.verify`, `verify_http_auth`, `verify_relay_auth`), never from what a client says about itself.
"""

from autopilot_sync.nostr.errors import (
    AuthErrorCode,
    EventErrorCode,
    KeyErrorCode,
    NostrAuthError,
    NostrError,
    NostrEventError,
    NostrKeyError,
    RelayAuthError,
    RelayAuthErrorCode,
)
from autopilot_sync.nostr.event import Event, compute_event_id, serialize_for_id, sign_event
from autopilot_sync.nostr.keyfile import StoredKey, load_or_create_secret_key, load_secret_key, save_secret_key
from autopilot_sync.nostr.keys import PublicKey, SecretKey
from autopilot_sync.nostr.nip42 import build_relay_auth_event, verify_relay_auth
from autopilot_sync.nostr.nip98 import (
    build_http_auth_event,
    decode_authorization_header,
    encode_authorization_header,
    verify_http_auth,
)
from autopilot_sync.nostr.replay import ReplayGuard

__all__ = [
    "AuthErrorCode",
    "Event",
    "EventErrorCode",
    "KeyErrorCode",
    "NostrAuthError",
    "NostrError",
    "NostrEventError",
    "NostrKeyError",
    "PublicKey",
    "RelayAuthError",
    "RelayAuthErrorCode",
    "ReplayGuard",
    "SecretKey",
    "StoredKey",
    "build_http_auth_event",
    "build_relay_auth_event",
    "compute_event_id",
    "decode_authorization_header",
    "encode_authorization_header",
    "load_or_create_secret_key",
    "load_secret_key",
    "save_secret_key",
    "serialize_for_id",
    "sign_event",
    "verify_http_auth",
    "verify_relay_auth",
]
