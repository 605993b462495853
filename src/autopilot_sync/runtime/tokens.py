"""The runtime's session tokens: proven with its own Nostr key at the control service, refreshed before expiry.

The key file is created (mode 0600) on first run, so a fresh install only has to add the printed public key to
control's append allow-list. Tokens ask for exactly what publishing needs: `sync.append` and `sync.subscribe`
(the host admits a connection only with one of those) on the runtime's own streams.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from autopilot_sync.control.client import SessionToken, TokenFetchError, fetch_session_token
from autopilot_sync.nostr.keyfile import load_or_create_secret_key
from autopilot_sync.nostr.keys import SecretKey
from autopilot_sync.runtime.retry import FailureKind, PublishFailure

#: The scopes the runtime asks for.
RUNTIME_SCOPES = ("sync.append", "sync.subscribe")
#: The streams the runtime publishes (the `streams` claim pattern).
RUNTIME_STREAMS = ("runtime.*",)
#: The `client_kind` claim, shown in presence.
CLIENT_KIND = "runtime"

log = logging.getLogger(__name__)


def load_or_create_key(path: Path) -> SecretKey:
    """The runtime's secret key from `path`, generated and saved 0600 there when the file does not exist yet."""
    stored = load_or_create_secret_key(path)
    if stored.created:
        public = stored.secret.public_key().hex
        log.warning("created runtime Nostr key %s; allow-list its public key %s at control", path, public)
    return stored.secret


class TokenSource:
    """A current session token on demand: fetched on first use, replaced once control's refresh time has passed.

    The refresh time is control's `refresh_after_in` counted from when the answer arrived (this machine's clock), so
    the runtime refreshes with the margin control chose (its `token_refresh_margin_seconds`) whatever the lifetime;
    the SDK's `SyncClient` reads the same time from the grant and reconnects with the new token before the host
    closes the socket at expiry.
    """

    def __init__(self, control_url: str, key: SecretKey, ttl_seconds: int | None = None) -> None:
        self.control_url = control_url
        self.key = key
        self.ttl_seconds = ttl_seconds
        self._current: SessionToken | None = None
        self._lock = asyncio.Lock()

    async def token(self, force_refresh: bool = False) -> str:
        """A token valid for a while yet; `TokenError` (carrying a `PublishFailure`) when control gives none."""
        async with self._lock:
            current = self._current
            now = time.time()
            if current is None or force_refresh or current.needs_refresh(now) or current.expires_at <= now:
                current = await self._fetch()
                self._current = current
            return current.token

    @property
    def current(self) -> SessionToken | None:
        """The token held now (its `identity` and `issuer` name the runtime to the host)."""
        return self._current

    def expires_at(self) -> float | None:
        """Expiry (epoch seconds) of the token held now."""
        return None if self._current is None else self._current.expires_at

    def refresh_at(self) -> float | None:
        """When (epoch seconds) the token held now should be replaced (control's `refresh_after_in`)."""
        return None if self._current is None else self._current.refresh_at

    async def _fetch(self) -> SessionToken:
        try:
            return await fetch_session_token(
                self.control_url, self.key, RUNTIME_SCOPES, RUNTIME_STREAMS, self.ttl_seconds, CLIENT_KIND
            )
        except TokenFetchError as exc:
            kind = FailureKind.TOKEN_UNAVAILABLE if exc.retryable else FailureKind.TOKEN_REFUSED
            raise TokenError(PublishFailure(kind, f"control refused a token: {exc}")) from exc


class TokenError(Exception):
    """No token could be had; `failure` says whether that may pass (control down) or not (key not allowed)."""

    def __init__(self, failure: PublishFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure
