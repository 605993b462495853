"""Session tokens for the desktop: fetched from the control service with a NIP-98 proof, kept until refresh time.

The desktop asks without a `streams` claim: which streams its key may hold is control's policy, and which streams it
reads is decided by the streams' `stream_reader` rows in the host, never by what the desktop asks for.

The client SDK's reconnection manager asks for a token when it has none, at the refresh time control gave with the
current one (`refresh_after_in`: the SDK then reconnects with the new token and resumes, before the host closes the
socket at expiry), and after the host answered 401; each ask proves the key to control again with a fresh NIP-98
signature. The last token is kept for the UI (its expiry is shown).
"""

from __future__ import annotations

import asyncio

import aiohttp

from autopilot_sync.client.reconnect import TokenGrant
from autopilot_sync.control.client import SessionToken, fetch_session_token
from autopilot_sync.nostr.keys import SecretKey

DESKTOP_SCOPES = ("sync.subscribe", "sync.checkpoint.write")
"""What the desktop asks for: read streams and presence, report checkpoints. Never `sync.append`."""

CLIENT_KIND = "desktop"


class SessionTokens:
    """The desktop's current session token, refreshed before expiry and after a 401."""

    def __init__(
        self,
        control_url: str,
        secret: SecretKey,
        *,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._control_url = control_url
        self._secret = secret
        self._session = session
        self._current: SessionToken | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    @property
    def current(self) -> SessionToken | None:
        """The token last fetched, if any (its expiry is shown in the UI)."""
        return self._current

    async def grant(self) -> TokenGrant:
        """A new token from control, for the client SDK's token provider.

        The SDK asks only when it has none, when control's refresh time for the current one has come, or after the
        host answered 401, so every call proves the key again rather than handing back a token that just failed.
        """
        async with self._lock:
            current = await fetch_session_token(
                self._control_url,
                self._secret,
                DESKTOP_SCOPES,
                None,  # no `streams` claim: the desktop gets what control's policy gives its key
                None,
                CLIENT_KIND,
                session=self._session,
            )
            self._current = current
            self.fetches += 1
            return TokenGrant(current.token, current.expires_at, current.refresh_at)
