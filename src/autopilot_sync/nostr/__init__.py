"""Nostr for autopilot-sync: keys (NIP-19), events (NIP-01), HTTP auth (NIP-98), relay auth (NIP-42).

Pure and synchronous except the key-file helpers. BIP-340 Schnorr comes from libsecp256k1 via coincurve. The one
rule the rest of the system relies on: a Nostr pubkey is only ever taken from a verified signature
(`Event.verify`, `verify_http_auth`, `verify_relay_auth`), never from what a client says about itself.

The names below load their submodule on first use (PEP 562): the host's sync module needs only `keys` and `errors`,
and importing events, NIP-42/98 and the key file with them was ~10 ms of the host's start (docs/performance.md
"Round 7 — startup4").
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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

#: Each public name and the submodule that defines it.
_WHERE = {
    "AuthErrorCode": "errors",
    "Event": "event",
    "EventErrorCode": "errors",
    "KeyErrorCode": "errors",
    "NostrAuthError": "errors",
    "NostrError": "errors",
    "NostrEventError": "errors",
    "NostrKeyError": "errors",
    "PublicKey": "keys",
    "RelayAuthError": "errors",
    "RelayAuthErrorCode": "errors",
    "ReplayGuard": "replay",
    "SecretKey": "keys",
    "StoredKey": "keyfile",
    "build_http_auth_event": "nip98",
    "build_relay_auth_event": "nip42",
    "compute_event_id": "event",
    "decode_authorization_header": "nip98",
    "encode_authorization_header": "nip98",
    "load_or_create_secret_key": "keyfile",
    "load_secret_key": "keyfile",
    "save_secret_key": "keyfile",
    "serialize_for_id": "event",
    "sign_event": "event",
    "verify_http_auth": "nip98",
    "verify_relay_auth": "nip42",
}


def __getattr__(name: str) -> object:
    """Import the submodule that defines `name` the first time the package-level name is used."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
