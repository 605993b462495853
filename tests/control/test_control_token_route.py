"""A good NIP-98 proof gets a signed session token whose claims the host accepts and derives the same identity from."""

from __future__ import annotations

from typing import Any

from control_helpers import DATABASE, PRODUCER, READER, SPACETIME_URL, Control, decode_jwt, encode, reader_body
from joserfc import jwk, jws

from autopilot_sync.auth.oidc import OidcVerifier
from autopilot_sync.host.auth.tokens import SigningKey as HostKey
from autopilot_sync.host.auth.tokens import TokenService
from autopilot_sync.spacetime.identity import identity_from_claims


async def _issue(control: Control, **changes: Any) -> dict[str, Any]:
    status, body = await control.post(encode(reader_body(**changes)))
    assert status == 200, body
    return body


async def test_reader_gets_a_bearer_token_describing_itself(control: Control) -> None:
    body = await _issue(control)
    pubkey = READER.public_key()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300  # the default TTL
    assert body["refresh_after_in"] == 270
    assert body["scopes"] == ["sync.subscribe", "sync.checkpoint.write"]
    assert body["streams"] == ["run:*", "worker:alpha"]
    assert body["nostr_pubkey_hex"] == pubkey.hex
    assert body["npub"] == pubkey.npub
    assert body["identity"] == identity_from_claims(control.url, pubkey.hex).hex
    assert body["database"] == DATABASE
    assert body["spacetime_base_url"] == SPACETIME_URL


async def test_token_claims_are_exactly_what_the_host_and_module_read(control: Control) -> None:
    body = await _issue(control, ttl_seconds=120, client_kind="runtime")
    header, claims = decode_jwt(body["token"])
    pubkey = READER.public_key()
    assert header["alg"] == "ES256"
    assert header["kid"] == control.service.keys.signing_key().kid
    assert claims["iss"] == control.url
    assert claims["sub"] == pubkey.hex
    assert claims["aud"] == ["spacetimedb", DATABASE]
    assert claims["nbf"] == claims["iat"]
    assert claims["exp"] - claims["iat"] == 120
    assert claims["hex_identity"] == identity_from_claims(control.url, pubkey.hex).hex
    assert claims["scopes"] == ["sync.subscribe", "sync.checkpoint.write"]
    assert claims["streams"] == ["run:*", "worker:alpha"]
    assert claims["client_kind"] == "runtime"
    assert isinstance(claims["jti"], str) and len(claims["jti"]) == 32
    assert set(claims) == {
        "iss", "sub", "aud", "iat", "nbf", "exp", "jti", "hex_identity", "scopes", "streams", "client_kind",
    }  # fmt: skip


async def test_token_signature_verifies_with_the_published_key(control: Control) -> None:
    body = await _issue(control)
    header, _ = decode_jwt(body["token"])
    document = await control.get_json("/.well-known/jwks.json")
    key = next(entry for entry in document["keys"] if entry["kid"] == header["kid"])
    jws.deserialize_compact(body["token"], jwk.import_key(key), algorithms=["ES256"])


async def test_every_token_has_its_own_jti(control: Control) -> None:
    first = decode_jwt((await _issue(control))["token"])[1]
    second = decode_jwt((await _issue(control))["token"])[1]
    assert first["jti"] != second["jti"]


async def test_host_token_verification_accepts_the_token_through_oidc_discovery(control: Control) -> None:
    """The host's own verifier (discovery → jwks_uri → kid) accepts it and derives the identity the response named."""
    body = await _issue(control, client_kind="desktop")
    tokens = TokenService(HostKey.generate(), oidc=OidcVerifier([control.url]))
    try:
        verified = await tokens.verify(body["token"])
    finally:
        await tokens.close()
    assert verified.identity.hex == body["identity"]
    assert verified.subject == READER.public_key().hex
    assert verified.issuer == control.url


async def test_host_that_does_not_trust_control_refuses_its_tokens(control: Control) -> None:
    body = await _issue(control)
    tokens = TokenService(HostKey.generate(), oidc=OidcVerifier(["https://someone-else.example"]))
    try:
        try:
            await tokens.verify(body["token"])
        except Exception as exc:  # TokenError
            assert "not trusted" in str(exc)
        else:
            raise AssertionError("an untrusted issuer's token was accepted")
    finally:
        await tokens.close()


async def test_ttl_bounds_are_inclusive(control: Control) -> None:
    assert (await _issue(control, ttl_seconds=60))["expires_in"] == 60
    assert (await _issue(control, ttl_seconds=60))["refresh_after_in"] == 30
    assert (await _issue(control, ttl_seconds=900))["expires_in"] == 900


async def test_query_string_is_part_of_the_signed_url(control: Control) -> None:
    raw = encode(reader_body())
    event = control.proof(raw, url=control.token_url + "?client=desktop")
    status, body = await control.post(raw, event=event, query="?client=desktop")
    assert status == 200, body


async def test_producer_on_the_allowlist_gets_append_and_admin(control: Control) -> None:
    raw = encode(reader_body(scopes=["sync.append", "sync.admin", "sync.subscribe"], client_kind="runtime"))
    status, body = await control.post(raw, secret=PRODUCER)
    assert status == 200, body
    assert body["scopes"] == ["sync.append", "sync.admin", "sync.subscribe"]
    assert decode_jwt(body["token"])[1]["sub"] == PRODUCER.public_key().hex


async def test_issued_tokens_are_counted_by_client_kind(control: Control) -> None:
    await _issue(control, client_kind="desktop")
    await _issue(control, client_kind="desktop")
    await _issue(control, client_kind="my-own-tool")
    assert await control.metric("autopilot_sync_control_tokens_issued_total", client_kind="desktop") == 2
    assert await control.metric("autopilot_sync_control_tokens_issued_total", client_kind="other") == 1
