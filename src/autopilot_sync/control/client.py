"""Getting a session token from the control service, for the runtime, the desktop and tests.

One call signs the NIP-98 proof for exactly this request (URL, method, body hash), posts it, and returns a typed
`SessionToken`, or raises `TokenFetchError` carrying the server's error code, so no component writes its own HTTP
or proof code. `retryable` on the error tells transient failures (network, 5xx) from refusals that will not change
by asking again with the same key and request.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from autopilot_sync.control.errors import ControlErrorCode
from autopilot_sync.control.service import TOKEN_PATH
from autopilot_sync.nostr.event import Event, sign_event
from autopilot_sync.nostr.keyfile import load_secret_key
from autopilot_sync.nostr.keys import SecretKey
from autopilot_sync.nostr.nip98 import HTTP_AUTH_KIND, encode_authorization_header, payload_hash

#: `error` of a `TokenFetchError` raised when no usable answer came back (network failure, non-JSON reply).
UNAVAILABLE = "unavailable"
DEFAULT_TIMEOUT_SECONDS = 10.0


class TokenFetchError(Exception):
    """The control service did not issue a token; `error` is its code (or `unavailable`), `status` its HTTP status."""

    def __init__(self, error: str, message: str, status: int | None) -> None:
        super().__init__(f"{error}: {message}" if status is None else f"{error} (HTTP {status}): {message}")
        self.error = error
        self.message = message
        self.status = status

    @property
    def code(self) -> ControlErrorCode | None:
        """The documented code, or None for `unavailable` and codes this client does not know."""
        try:
            return ControlErrorCode(self.error)
        except ValueError:
            return None

    @property
    def retryable(self) -> bool:
        """True for failures that may pass on a later attempt (no answer, 5xx, clock skew, replay, rate limit)."""
        if self.status is None or self.status >= 500:
            return True
        return self.code in (ControlErrorCode.EXPIRED, ControlErrorCode.REPLAYED, ControlErrorCode.RATE_LIMITED)


@dataclass(frozen=True, slots=True)
class SessionToken:
    """A session token and what the control service said about it; times are this machine's epoch seconds."""

    token: str
    expires_at: float
    refresh_at: float
    scopes: tuple[str, ...]
    streams: tuple[str, ...]
    identity: str
    nostr_pubkey_hex: str
    npub: str
    database: str
    spacetime_base_url: str
    #: the token's `iss`: with a Nostr key, what the host derives that key's identity from
    issuer: str = ""

    def needs_refresh(self, now: float | None = None) -> bool:
        """True once the token should be replaced (`refresh_after_in` has passed)."""
        return (time.time() if now is None else now) >= self.refresh_at

    @classmethod
    def from_response(cls, body: dict[str, Any], received_at: float) -> SessionToken:
        """Build from the `200` JSON body; raises `TokenFetchError` if it lacks a field or has a wrong type."""
        try:
            return cls(
                token=str(body["token"]),
                expires_at=received_at + int(body["expires_in"]),
                refresh_at=received_at + int(body["refresh_after_in"]),
                scopes=tuple(str(scope) for scope in body["scopes"]),
                streams=tuple(str(stream) for stream in body["streams"]),
                identity=str(body["identity"]),
                nostr_pubkey_hex=str(body["nostr_pubkey_hex"]),
                npub=str(body["npub"]),
                database=str(body["database"]),
                spacetime_base_url=str(body["spacetime_base_url"]),
                issuer=str(body.get("issuer", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TokenFetchError(UNAVAILABLE, f"unexpected token response: {exc!r}", 200) from None


def token_proof(secret_key: SecretKey, url: str, body: bytes, created_at: int) -> Event:
    """The NIP-98 event for one token request: `u`, `method`, `payload`, and a random `nonce` tag.

    The event id covers only key, second, tags and content, so two identical requests in the same second (a
    reconnect storm, several workers sharing a key) would otherwise carry the same id and all but the first would
    be refused as `replayed`. The nonce makes every proof distinct; servers ignore tags they do not know.
    """
    tags = [["u", url], ["method", "POST"], ["payload", payload_hash(body)], ["nonce", os.urandom(16).hex()]]
    return sign_event(secret_key, kind=HTTP_AUTH_KIND, created_at=created_at, tags=tags, content="")


def _why(exc: BaseException, timeout: float) -> str:
    """A short human reason for a failed request (never a repr of the connector's internals)."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return (exc.os_error.strerror or str(exc.os_error)).lower() if exc.os_error else "cannot connect"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status}"
    return type(exc).__name__


def token_url(control_url: str) -> str:
    """The absolute URL of the token route for a control base URL (what the proof's `u` tag must say)."""
    return control_url.rstrip("/") + TOKEN_PATH


async def fetch_session_token(
    control_url: str,
    secret_key: SecretKey,
    scopes: Sequence[str],
    streams: Sequence[str] | None,
    ttl_seconds: int | None,
    client_kind: str,
    *,
    session: aiohttp.ClientSession | None = None,
    request_timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> SessionToken:
    """Prove `secret_key`'s identity to the control service at `control_url` and return a session token.

    `control_url` is the service's public URL (its token issuer). `ttl_seconds=None` takes the server's default;
    `streams=None` asks without a `streams` claim and gets what control's policy gives the key.
    Pass a `session` to reuse connections; otherwise one is opened for this call.
    """
    url = token_url(control_url)
    fields: dict[str, Any] = {"scopes": list(scopes), "ttl_seconds": ttl_seconds, "client_kind": client_kind}
    if streams is not None:
        fields["streams"] = list(streams)
    body = json.dumps(fields, separators=(",", ":")).encode("utf-8")
    proof = token_proof(secret_key, url, body, int(time.time()))
    headers = {"Authorization": encode_authorization_header(proof), "Content-Type": "application/json"}
    owned = session is None
    client = session or aiohttp.ClientSession()
    try:
        async with client.post(
            url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=request_timeout), allow_redirects=False
        ) as response:
            status = response.status
            raw = await response.read()
            received_at = time.time()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TokenFetchError(
            UNAVAILABLE, f"control unreachable at {control_url}: {_why(exc, request_timeout)}", None
        ) from exc
    finally:
        if owned:
            await client.close()
    try:
        decoded = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        decoded = None
    if not isinstance(decoded, dict):
        raise TokenFetchError(UNAVAILABLE, f"POST {url} answered HTTP {status} without a JSON object", status)
    if status != 200:
        error = decoded.get("error")
        message = decoded.get("message")
        raise TokenFetchError(
            error if isinstance(error, str) else UNAVAILABLE,
            message if isinstance(message, str) else f"HTTP {status}",
            status,
        )
    return SessionToken.from_response(decoded, received_at)


async def fetch_session_token_for_key_file(
    control_url: str,
    key_file: str | os.PathLike[str],
    scopes: Sequence[str],
    streams: Sequence[str] | None,
    ttl_seconds: int | None,
    client_kind: str,
) -> SessionToken:
    """`fetch_session_token` for the key in `key_file` (read with the key-file rules: 0600, owned by the user).

    The one exchange of the command line (`autopilot-sync control token` and `autopilot-sync token`). Raises
    `NostrKeyError` for a key file it cannot use, `TokenFetchError` when control issues no token.
    """
    secret_key = load_secret_key(key_file)
    return await fetch_session_token(control_url, secret_key, scopes, streams, ttl_seconds, client_kind)
