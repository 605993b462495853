"""Tokens from trusted OIDC issuers, verified against keys fetched from a real local issuer over HTTP."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from autopilot_sync.auth.errors import TokenError, TokenErrorCode
from autopilot_sync.auth.oidc import OidcVerifier
from autopilot_sync.host.auth.tokens import SigningKey, TokenService
from autopilot_sync.spacetime.identity import identity_from_claims


@dataclass
class Issuer:
    """A minimal OIDC provider on 127.0.0.1: discovery + JWKS, keys swappable, requests counted."""

    url: str = ""
    keys: dict[str, Any] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)
    fail: bool = False

    def sign(self, kid: str | None, claims: dict[str, Any], alg: str = "ES256") -> str:
        header: dict[str, Any] = {"alg": alg}
        if kid is not None:
            header["kid"] = kid
        key = self.keys[kid] if kid is not None else next(iter(self.keys.values()))
        return jwt.encode(header, claims, key)

    def claims(self, sub: str = "user-1", **extra: Any) -> dict[str, Any]:
        now = int(time.time())
        return {"iss": self.url, "sub": sub, "iat": now, "exp": now + 300, **extra}


@pytest.fixture
async def issuer() -> AsyncIterator[Issuer]:
    state = Issuer(keys={"ec-1": ECKey.generate_key("P-256"), "rsa-1": RSAKey.generate_key(2048)})

    async def discovery(request: web.Request) -> web.Response:
        state.hits.append("discovery")
        if state.fail:
            return web.Response(status=503)
        return web.json_response({"issuer": state.url, "jwks_uri": f"{state.url}/jwks"})

    async def jwks(request: web.Request) -> web.Response:
        state.hits.append("jwks")
        keys = []
        for kid, key in state.keys.items():
            public = key.as_dict(private=False)
            public["kid"] = kid
            keys.append(public)
        keys.append({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"})  # must be ignored
        return web.json_response({"keys": keys})

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", discovery)
    app.router.add_get("/jwks", jwks)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def service(issuer: Issuer) -> AsyncIterator[tuple[TokenService, OidcVerifier, Monotonic]]:
    clock = Monotonic()
    verifier = OidcVerifier([issuer.url], clock=clock)
    tokens = TokenService(SigningKey.generate(), oidc=verifier)
    yield tokens, verifier, clock
    await tokens.close()


async def test_es256_and_rs256_tokens_from_a_trusted_issuer_verify(
    issuer: Issuer, service: tuple[TokenService, OidcVerifier, Monotonic]
) -> None:
    tokens, _, _ = service
    for kid, alg in (("ec-1", "ES256"), ("rsa-1", "RS256")):
        verified = await tokens.verify(issuer.sign(kid, issuer.claims(scope="sync.subscribe"), alg))
        assert verified.identity == identity_from_claims(issuer.url, "user-1")
        assert verified.claims["scope"] == "sync.subscribe"
    assert issuer.hits == ["discovery", "jwks"]  # second token served from the cache


async def test_token_without_kid_tries_every_key(
    issuer: Issuer, service: tuple[TokenService, OidcVerifier, Monotonic]
) -> None:
    tokens, _, _ = service
    issuer.keys = {"ec-1": issuer.keys["ec-1"]}
    assert (await tokens.verify(issuer.sign(None, issuer.claims()))).subject == "user-1"


async def test_keys_are_refetched_after_300_seconds(
    issuer: Issuer, service: tuple[TokenService, OidcVerifier, Monotonic]
) -> None:
    tokens, _, clock = service
    await tokens.verify(issuer.sign("ec-1", issuer.claims()))
    clock.now += 299
    await tokens.verify(issuer.sign("ec-1", issuer.claims()))
    assert issuer.hits.count("jwks") == 1
    clock.now += 2
    await tokens.verify(issuer.sign("ec-1", issuer.claims()))
    assert issuer.hits.count("jwks") == 2


async def test_rotated_key_is_found_by_one_refetch_and_bogus_kids_do_not_hammer_the_issuer(
    issuer: Issuer, service: tuple[TokenService, OidcVerifier, Monotonic]
) -> None:
    tokens, _, clock = service
    await tokens.verify(issuer.sign("ec-1", issuer.claims()))
    clock.now += 31
    issuer.keys["ec-2"] = ECKey.generate_key("P-256")
    assert (await tokens.verify(issuer.sign("ec-2", issuer.claims()))).subject == "user-1"
    assert issuer.hits.count("jwks") == 2
    bogus = ECKey.generate_key("P-256")
    forged = jwt.encode({"alg": "ES256", "kid": "nope"}, issuer.claims(), bogus)
    for _ in range(20):
        with pytest.raises(TokenError) as info:
            await tokens.verify(forged)
        assert info.value.code is TokenErrorCode.BAD_SIGNATURE
    assert issuer.hits.count("jwks") == 2  # fetched moments ago: no refetch storm


async def test_wrong_key_same_kid_is_a_bad_signature(
    issuer: Issuer, service: tuple[TokenService, OidcVerifier, Monotonic]
) -> None:
    tokens, _, _ = service
    forged = jwt.encode({"alg": "ES256", "kid": "ec-1"}, issuer.claims(), ECKey.generate_key("P-256"))
    with pytest.raises(TokenError) as info:
        await tokens.verify(forged)
    assert info.value.code is TokenErrorCode.BAD_SIGNATURE


async def test_untrusted_issuer_is_never_contacted(issuer: Issuer) -> None:
    tokens = TokenService(SigningKey.generate(), oidc=OidcVerifier(["https://someone-else.example"]))
    with pytest.raises(TokenError) as info:
        await tokens.verify(issuer.sign("ec-1", issuer.claims()))
    assert info.value.code is TokenErrorCode.UNKNOWN_ISSUER
    assert issuer.hits == []
    await tokens.close()


async def test_expired_and_not_yet_valid_tokens_fail_before_any_fetch(
    issuer: Issuer, service: tuple[TokenService, OidcVerifier, Monotonic]
) -> None:
    tokens, _, _ = service
    now = int(time.time())
    with pytest.raises(TokenError) as info:
        await tokens.verify(issuer.sign("ec-1", issuer.claims(exp=now - 120)))
    assert info.value.code is TokenErrorCode.EXPIRED
    with pytest.raises(TokenError) as info:
        await tokens.verify(issuer.sign("ec-1", issuer.claims(nbf=now + 120)))
    assert info.value.code is TokenErrorCode.NOT_YET_VALID
    assert issuer.hits == []


async def test_hex_identity_must_match_the_derived_identity(
    issuer: Issuer, service: tuple[TokenService, OidcVerifier, Monotonic]
) -> None:
    tokens, _, _ = service
    good = identity_from_claims(issuer.url, "user-1").hex
    assert (await tokens.verify(issuer.sign("ec-1", issuer.claims(hex_identity=good)))).subject == "user-1"
    other = identity_from_claims(issuer.url, "user-2").hex
    with pytest.raises(TokenError) as info:
        await tokens.verify(issuer.sign("ec-1", issuer.claims(hex_identity=other)))
    assert info.value.code is TokenErrorCode.IDENTITY_MISMATCH


async def test_hs256_is_refused_even_from_a_trusted_issuer(
    issuer: Issuer, service: tuple[TokenService, OidcVerifier, Monotonic]
) -> None:
    from joserfc.jwk import OctKey

    tokens, _, _ = service
    token = jwt.encode(
        {"alg": "HS256", "kid": "hmac"}, issuer.claims(), OctKey.import_key("a-shared-secret-long-enough-for-hs256")
    )
    with pytest.raises(TokenError) as info:
        await tokens.verify(token)
    assert info.value.code is TokenErrorCode.BAD_SIGNATURE
    assert issuer.hits == []


async def test_unreachable_issuer_is_reported_and_a_later_fetch_recovers(
    issuer: Issuer, service: tuple[TokenService, OidcVerifier, Monotonic]
) -> None:
    tokens, _, _ = service
    issuer.fail = True
    with pytest.raises(TokenError) as info:
        await tokens.verify(issuer.sign("ec-1", issuer.claims()))
    assert info.value.code is TokenErrorCode.JWKS_UNAVAILABLE
    issuer.fail = False
    assert (await tokens.verify(issuer.sign("ec-1", issuer.claims()))).subject == "user-1"


async def test_remembered_oidc_token_is_checked_again_once_its_keys_are_refetched(
    issuer: Issuer, service: tuple[TokenService, OidcVerifier, Monotonic]
) -> None:
    tokens, _, clock = service
    token = issuer.sign("ec-1", issuer.claims())
    await tokens.verify(token)
    await tokens.verify(token)  # remembered: no new fetch
    assert issuer.hits.count("jwks") == 1
    del issuer.keys["ec-1"]  # the issuer withdraws the key
    clock.now += 301  # the JWKS cache expires: the next check refetches and no longer finds the key
    with pytest.raises(TokenError) as info:
        await tokens.verify(token)
    assert info.value.code is TokenErrorCode.BAD_SIGNATURE
    assert issuer.hits.count("jwks") == 2
