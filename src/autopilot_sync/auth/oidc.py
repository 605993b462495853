"""Signature keys of trusted OpenID Connect issuers, fetched by discovery and cached.

A token not signed by the host's own key may come from an external identity provider (our control service, or any
OIDC issuer the operator trusts). Like SpacetimeDB we find its keys at `{iss}/.well-known/openid-configuration` →
`jwks_uri` and pick the key by `kid`; unlike SpacetimeDB (which will fetch keys for any issuer a token names) only
issuers listed in the settings are ever contacted, so a client cannot make the host fetch arbitrary URLs.

Keys are cached for `cache_ttl` seconds (300, as the real host). A token with an unknown `kid` (the issuer rotated
its keys) triggers one refetch, but at most once per `min_refetch_interval` per issuer, so a stream of tokens with
bogus key ids cannot turn the host into a request amplifier. Concurrent lookups for one issuer share one fetch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:
    from joserfc import jwk

from autopilot_sync.auth.aiohttp_client import client_pending, complete_aiohttp
from autopilot_sync.auth.errors import TokenError, TokenErrorCode

_log = logging.getLogger(__name__)

#: Signature algorithms accepted from external issuers (HS256 is refused: a shared secret cannot come from JWKS).
OIDC_ALGORITHMS = ("ES256", "RS256")
#: Largest discovery or JWKS document read, so a hostile issuer cannot exhaust memory.
MAX_DOCUMENT_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class _KeySet:
    """One issuer's keys and when they were fetched (monotonic seconds)."""

    keys: tuple[tuple[str | None, jwk.Key], ...]
    fetched_at: float

    def by_kid(self, kid: str) -> jwk.Key | None:
        return next((key for key_id, key in self.keys if key_id == kid), None)


class OidcVerifier:
    """Verifies signatures of tokens from the configured trusted issuers, with a bounded JWKS cache."""

    def __init__(
        self,
        trusted_issuers: Iterable[str],
        *,
        cache_ttl: float = 300.0,
        min_refetch_interval: float = 30.0,
        http_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.trusted_issuers = frozenset(trusted_issuers)
        self._cache_ttl = cache_ttl
        self._min_refetch = min_refetch_interval
        self._http_timeout = http_timeout  # an `aiohttp.ClientTimeout` with the client (auth/aiohttp_client.py)
        self._clock = clock
        self._cache: dict[str, _KeySet] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._session: aiohttp.ClientSession | None = None
        self.fetch_count = 0

    def is_trusted(self, issuer: str) -> bool:
        """True when tokens from `issuer` may be verified against its published keys."""
        return issuer in self.trusted_issuers

    def current_keys(self, issuer: str) -> object | None:
        """The issuer's cached key set while it is fresh (None otherwise): an opaque handle compared by identity.

        A verification remembered together with this handle stays valid exactly as long as the same keys would still
        be used to check it again: a refetch (rotation) or the cache expiring makes the handle differ.
        """
        cached = self._cache.get(issuer)
        if cached is None or self._clock() - cached.fetched_at >= self._cache_ttl:
            return None
        return cached

    async def close(self) -> None:
        """Close the HTTP client (call at host shutdown)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def verify_signature(self, token: str, issuer: str, header: dict[str, Any]) -> None:
        """Check the token's signature against the issuer's keys; raises TokenError, returns nothing on success.

        Claims are not interpreted here (that is `tokens.py`'s job, the same rules for every token).
        """
        if not self.is_trusted(issuer):
            raise TokenError(TokenErrorCode.UNKNOWN_ISSUER, f"issuer {issuer!r} is not trusted by this host")
        alg = header.get("alg")
        if alg not in OIDC_ALGORITHMS:
            raise TokenError(TokenErrorCode.BAD_SIGNATURE, f"algorithm {alg!r} not accepted (use ES256 or RS256)")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise TokenError(TokenErrorCode.MALFORMED, "token header kid must be a string")
        keys = await self._keys(issuer, kid)
        candidates = [keys.by_kid(kid)] if kid is not None else [key for _, key in keys.keys]
        found = [key for key in candidates if key is not None]
        if not found:
            raise TokenError(TokenErrorCode.BAD_SIGNATURE, "Specified key ID not found in JWKs")
        from joserfc import jws  # imported on first use: it costs a host's start ~0.1 s of CPU
        from joserfc.errors import JoseError

        for key in found:
            try:
                jws.deserialize_compact(token, key, algorithms=[alg])
                return
            except (JoseError, ValueError, TypeError):
                continue
        raise TokenError(TokenErrorCode.BAD_SIGNATURE, f"signature does not verify with the keys of {issuer}")

    async def _keys(self, issuer: str, kid: str | None) -> _KeySet:
        lock = self._locks.setdefault(issuer, asyncio.Lock())
        async with lock:
            now = self._clock()
            cached = self._cache.get(issuer)
            fresh = cached is not None and now - cached.fetched_at < self._cache_ttl
            if cached is not None and fresh and (kid is None or cached.by_kid(kid) is not None):
                return cached
            if cached is not None and fresh and now - cached.fetched_at < self._min_refetch:
                # Unknown kid, but we fetched moments ago: refetching again would only amplify bogus requests.
                return cached
            try:
                fetched = await self._fetch(issuer)
            except TokenError:
                if cached is not None and fresh:
                    return cached
                raise
            self._cache[issuer] = fetched
            return fetched

    async def _get_json(self, session: aiohttp.ClientSession, url: str) -> Any:
        async with session.get(url, allow_redirects=False) as response:
            if response.status != 200:
                raise TokenError(TokenErrorCode.JWKS_UNAVAILABLE, f"GET {url} returned HTTP {response.status}")
            body = await response.content.read(MAX_DOCUMENT_BYTES + 1)
            if len(body) > MAX_DOCUMENT_BYTES:
                raise TokenError(
                    TokenErrorCode.JWKS_UNAVAILABLE, f"GET {url}: document over {MAX_DOCUMENT_BYTES} bytes"
                )
            try:
                return json.loads(body)
            except (ValueError, UnicodeDecodeError):
                raise TokenError(TokenErrorCode.JWKS_UNAVAILABLE, f"GET {url}: not JSON") from None

    async def _fetch(self, issuer: str) -> _KeySet:
        if self._session is None:
            if client_pending():  # the host imported aiohttp's server only (auth/aiohttp_client.py): not on the loop
                await asyncio.to_thread(complete_aiohttp)
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._http_timeout))
        self.fetch_count += 1
        discovery_url = f"{issuer.rstrip('/')}/.well-known/openid-configuration"
        try:
            discovery = await self._get_json(self._session, discovery_url)
            if not isinstance(discovery, dict) or not isinstance(discovery.get("jwks_uri"), str):
                raise TokenError(TokenErrorCode.JWKS_UNAVAILABLE, f"{discovery_url} has no jwks_uri")
            if discovery.get("issuer", issuer) != issuer:
                raise TokenError(
                    TokenErrorCode.JWKS_UNAVAILABLE,
                    f"{discovery_url} names issuer {discovery.get('issuer')!r}, expected {issuer!r}",
                )
            document = await self._get_json(self._session, discovery["jwks_uri"])
        except (aiohttp.ClientError, TimeoutError) as exc:
            _log.warning("fetching keys of issuer %s failed: %s", issuer, exc)
            raise TokenError(TokenErrorCode.JWKS_UNAVAILABLE, f"cannot fetch keys of issuer {issuer}: {exc}") from None
        raw_keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(raw_keys, list):
            raise TokenError(TokenErrorCode.JWKS_UNAVAILABLE, f"JWKS of {issuer} has no keys array")
        from joserfc import jwk
        from joserfc.errors import JoseError

        keys: list[tuple[str | None, jwk.Key]] = []
        for raw in raw_keys:
            if not isinstance(raw, dict) or raw.get("use", "sig") != "sig" or raw.get("kty") not in ("EC", "RSA"):
                continue
            try:
                key = jwk.import_key(raw)
            except (JoseError, ValueError, TypeError) as exc:
                _log.info("skipping unusable key in JWKS of %s: %s", issuer, exc)
                continue
            kid = raw.get("kid")
            keys.append((kid if isinstance(kid, str) else None, key))
        return _KeySet(tuple(keys), self._clock())
