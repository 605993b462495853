"""The host's own tokens: the key on disk, the claims it mints, and what verification refuses."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from autopilot_sync.auth.claims import parse_unverified
from autopilot_sync.auth.errors import TokenError, TokenErrorCode
from autopilot_sync.host.auth.tokens import (
    KEY_FILE_NAME,
    SigningKey,
    TokenService,
    VerifiedToken,
)
from autopilot_sync.spacetime.identity import identity_from_claims

NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(clock: Clock) -> TokenService:
    return TokenService(SigningKey.generate(), clock=clock)


def test_key_is_created_once_with_mode_0600_and_reused(tmp_path: Path) -> None:
    first = SigningKey.load_or_create(tmp_path / "data")
    path = tmp_path / "data" / KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    second = SigningKey.load_or_create(tmp_path / "data")
    assert first.public_pem == second.public_pem
    assert second.verifies(first.sign({"iss": "x"}))
    assert [p.name for p in (tmp_path / "data").iterdir()] == [KEY_FILE_NAME]


def test_signed_token_verifies_with_an_independent_jose_library_whatever_its_claims() -> None:
    key = SigningKey.generate()
    claims = {"iss": "x", "sub": "ü", "aud": ["db"], "iat": 1, "big": 2**70, "nested": {"a": [1, None, 2.5]}}
    token = key.sign(claims)
    decoded = jwt.decode(token, ECKey.import_key(key.public_pem), algorithms=["ES256"])
    assert decoded.header == {"typ": "JWT", "alg": "ES256"}
    assert decoded.claims == claims
    assert key.verifies(token)
    assert not SigningKey.generate().verifies(token)


def test_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    SigningKey.load_or_create(tmp_path)
    os.chmod(tmp_path / KEY_FILE_NAME, 0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        SigningKey.load_or_create(tmp_path)


async def test_minted_token_has_exactly_the_spacetimedb_claims(service: TokenService) -> None:
    minted = service.mint_anonymous()
    header, claims = parse_unverified(minted.token)
    assert header == {"typ": "JWT", "alg": "ES256"}
    assert set(claims) == {"iss", "sub", "aud", "iat", "exp", "hex_identity"}
    assert claims["iss"] == "localhost"
    assert claims["aud"] == ["spacetimedb"]
    assert claims["iat"] == int(NOW)
    assert claims["exp"] is None
    assert claims["hex_identity"] == identity_from_claims("localhost", claims["sub"]).hex
    assert minted.identity.hex == claims["hex_identity"]
    verified = await service.verify(minted.token)
    assert verified.identity == minted.identity


def test_each_mint_is_a_new_identity(service: TokenService) -> None:
    assert service.mint_anonymous().identity != service.mint_anonymous().identity


async def test_websocket_token_keeps_claims_and_expires_after_60s(service: TokenService, clock: Clock) -> None:
    foreign = SigningKey.generate().sign(
        {"iss": "https://idp.example", "sub": "u1", "aud": "app", "iat": int(NOW), "scope": "sync.subscribe"}
    )
    _, foreign_claims = parse_unverified(foreign)
    original = VerifiedToken(
        foreign, identity_from_claims("https://idp.example", "u1"), "https://idp.example", "u1", foreign_claims
    )
    clock.now += 10
    short = service.resign(original)
    _, claims = parse_unverified(short.token)
    assert claims["iss"] == "https://idp.example" and claims["sub"] == "u1"
    assert claims["aud"] == ["app"]
    assert claims["scope"] == "sync.subscribe"
    assert claims["exp"] == claims["iat"] + 60 == int(NOW) + 70
    # Signed by the host, so it verifies even though the issuer is foreign and not trusted.
    assert (await service.verify(short.token)).identity == original.identity
    clock.now += 60 + 60 + 1  # past exp plus the 60 s leeway
    with pytest.raises(TokenError) as info:
        await service.verify(short.token)
    assert info.value.code is TokenErrorCode.EXPIRED


async def test_token_for_our_issuer_signed_by_another_key_is_a_bad_signature(service: TokenService) -> None:
    forged = SigningKey.generate().sign({"iss": "localhost", "sub": "admin", "iat": int(NOW)})
    with pytest.raises(TokenError) as info:
        await service.verify(forged)
    assert info.value.code is TokenErrorCode.BAD_SIGNATURE


async def test_foreign_issuer_without_trust_is_unknown(service: TokenService) -> None:
    token = SigningKey.generate().sign({"iss": "https://evil.example", "sub": "x", "iat": int(NOW)})
    with pytest.raises(TokenError) as info:
        await service.verify(token)
    assert info.value.code is TokenErrorCode.UNKNOWN_ISSUER


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({"sub": "a", "iat": NOW}, TokenErrorCode.MALFORMED),
        ({"iss": "localhost", "iat": NOW}, TokenErrorCode.MALFORMED),
        ({"iss": "localhost", "sub": "", "iat": NOW}, TokenErrorCode.MALFORMED),
        ({"iss": "localhost", "sub": "a" * 129, "iat": NOW}, TokenErrorCode.MALFORMED),
        ({"iss": "localhost", "sub": "a"}, TokenErrorCode.MALFORMED),
        ({"iss": "localhost", "sub": "a", "iat": NOW, "exp": NOW - 61}, TokenErrorCode.EXPIRED),
        ({"iss": "localhost", "sub": "a", "iat": NOW, "nbf": NOW + 61}, TokenErrorCode.NOT_YET_VALID),
        ({"iss": "localhost", "sub": "a", "iat": NOW, "aud": 5}, TokenErrorCode.MALFORMED),
        (
            {"iss": "localhost", "sub": "a", "iat": NOW, "hex_identity": identity_from_claims("localhost", "b").hex},
            TokenErrorCode.IDENTITY_MISMATCH,
        ),
        ({"iss": "localhost", "sub": "a", "iat": NOW, "hex_identity": "c200"}, TokenErrorCode.MALFORMED),
    ],
)
async def test_claim_rules(service: TokenService, claims: dict[str, object], code: TokenErrorCode) -> None:
    token = service.key.sign(claims)
    with pytest.raises(TokenError) as info:
        await service.verify(token)
    assert info.value.code is code


async def test_leeway_accepts_small_clock_skew(service: TokenService) -> None:
    token = service.key.sign({"iss": "localhost", "sub": "a", "iat": NOW, "exp": NOW - 59, "nbf": NOW + 59})
    assert (await service.verify(token)).subject == "a"


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c", "e30.e30.", "W10.e30.sig"])
async def test_garbage_is_malformed(service: TokenService, token: str) -> None:
    with pytest.raises(TokenError) as info:
        await service.verify(token)
    assert info.value.code is TokenErrorCode.MALFORMED


async def test_alg_none_and_hs256_never_pass_as_host_tokens(service: TokenService) -> None:
    claims = {"iss": "localhost", "sub": "a", "iat": int(NOW)}
    unsigned = "eyJhbGciOiJub25lIn0." + service.key.sign(claims).split(".")[1] + "."
    with pytest.raises(TokenError) as info:
        await service.verify(unsigned)
    assert info.value.code is TokenErrorCode.BAD_SIGNATURE
    other = ECKey.generate_key("P-256")
    with pytest.raises(TokenError):
        await service.verify(jwt.encode({"alg": "ES256"}, claims, other))


async def test_remembered_token_still_expires(service: TokenService, clock: Clock) -> None:
    token = service.resign(service.mint_anonymous()).token
    assert (await service.verify(token)).token == token
    assert (await service.verify(token)).token == token  # served from the verified-token cache
    clock.now += 60 + 60 + 1  # past exp plus the leeway, still inside the cache's own window
    with pytest.raises(TokenError) as info:
        await service.verify(token)
    assert info.value.code is TokenErrorCode.EXPIRED


async def test_exchanged_token_is_accepted_without_a_second_signature_check(
    service: TokenService, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin = service.mint_anonymous()
    short = service.resign(origin)
    checked: list[str] = []
    monkeypatch.setattr(service.key, "verifies", lambda token: checked.append(token) or True)
    verified = await service.verify(short.token)
    assert checked == []  # this host signed it a moment ago: remembered at issue, as verify would have
    assert (verified.identity, verified.claims, verified.expires_at) == (
        origin.identity,
        parse_unverified(short.token)[1],
        None,
    )
    await service.verify(short.token)
    assert checked == [short.token]  # remembered until its first use only (the upgrade): a second use is checked
    clock.now += 60 + 60 + 1  # the 60 s token is past exp and leeway: the remembered one expires all the same
    with pytest.raises(TokenError) as info:
        await service.verify(short.token)
    assert info.value.code is TokenErrorCode.EXPIRED


async def test_remembered_token_is_keyed_by_its_exact_string(service: TokenService) -> None:
    token = service.mint_anonymous().token
    await service.verify(token)
    header, payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    for tampered in (f"{header}.{payload}.{flipped}", token + " ", token[:-1]):
        with pytest.raises(TokenError):
            await service.verify(tampered)


async def test_exchanged_token_expires_with_its_origin_and_cannot_be_renewed(
    service: TokenService, clock: Clock
) -> None:
    origin_token = service.key.sign(
        {"iss": "https://idp.example", "sub": "u1", "aud": ["spacetimedb"], "iat": int(NOW), "exp": int(NOW) + 20}
    )
    origin = await service.verify(origin_token)
    assert origin.expires_at == NOW + 20
    short = service.resign(origin)
    assert short.claims["exp"] == short.claims["origin_exp"] == int(NOW) + 20  # capped at the origin, not now + 60
    clock.now += 15
    again = service.resign(await service.verify(short.token))
    assert again.claims["exp"] == again.claims["origin_exp"] == int(NOW) + 20
    assert service.rights_end(await service.verify(again.token)) == NOW + 20 + 60
    clock.now += 5 + 60 + 1  # past the origin's expiry plus the leeway
    with pytest.raises(TokenError) as info:
        await service.verify(again.token)
    assert info.value.code is TokenErrorCode.EXPIRED


async def test_anonymous_origin_gives_sockets_no_end(service: TokenService) -> None:
    short = service.resign(service.mint_anonymous())
    assert short.claims["origin_exp"] is None
    assert short.claims["exp"] == int(NOW) + 60
    assert service.rights_end(await service.verify(short.token)) is None


async def test_origin_expiry_claimed_by_another_issuer_is_ignored(clock: Clock) -> None:
    service = TokenService(SigningKey.generate(), clock=clock)
    foreign = VerifiedToken(
        "t",
        identity_from_claims("https://idp.example", "u1"),
        "https://idp.example",
        "u1",
        {"iss": "https://idp.example", "sub": "u1", "iat": NOW, "exp": NOW + 30, "origin_exp": NOW + 10_000},
        NOW + 30,
    )
    assert service.resign(foreign).claims["origin_exp"] == int(NOW) + 30


async def test_leeway_is_configurable(clock: Clock) -> None:
    strict = TokenService(SigningKey.generate(), leeway=0, clock=clock)
    token = strict.key.sign({"iss": "localhost", "sub": "a", "iat": NOW, "exp": NOW - 1})
    with pytest.raises(TokenError) as info:
        await strict.verify(token)
    assert info.value.code is TokenErrorCode.EXPIRED


async def test_tokens_of_other_issuers_must_name_the_database(clock: Clock) -> None:
    service = TokenService(SigningKey.generate(), database="autopilot-sync", clock=clock)
    claims = {"iss": "https://idp.example", "sub": "u1", "iat": NOW, "exp": NOW + 60}
    for aud in (None, "spacetimedb", ["spacetimedb", "another-db"]):
        with pytest.raises(TokenError) as info:
            await service.verify(service.key.sign({**claims, "aud": aud}))
        assert info.value.code is TokenErrorCode.WRONG_AUDIENCE
    ok = await service.verify(service.key.sign({**claims, "aud": ["spacetimedb", "autopilot-sync"]}))
    assert ok.subject == "u1"
    assert (await service.verify(service.mint_anonymous().token)).issuer == "localhost"
