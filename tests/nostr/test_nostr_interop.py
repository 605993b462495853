"""Cross-check against rust-nostr (PyPI `nostr-sdk`): its events verify with us, ours with it, npubs agree."""

from __future__ import annotations

import nostr_sdk  # type: ignore[import-untyped]
import pytest

from autopilot_sync.nostr import (
    Event,
    PublicKey,
    SecretKey,
    build_http_auth_event,
    encode_authorization_header,
    sign_event,
    verify_http_auth,
)

AWKWARD_CONTENT = [
    "",
    "plain",
    'quote " backslash \\ newline \n return \r tab \t backspace \b formfeed \f',
    "controls \x00 \x01 \x1f del \x7f",
    "unicode é 日本語 😀 \u2028 \u2029 \ufeff",
    "</script> & <b>",
]


def _sdk_sign(keys: nostr_sdk.Keys, kind: int, content: str, tags: list[list[str]], created_at: int) -> str:
    sdk_tags = [nostr_sdk.Tag.parse(tag) for tag in tags]
    builder = (
        nostr_sdk.EventBuilder(nostr_sdk.Kind(kind), content)
        .tags(sdk_tags)
        .custom_created_at(nostr_sdk.Timestamp.from_secs(created_at))
    )
    unsigned = builder.finalize_unsigned(keys.public_key())
    signed = keys.sign_event(unsigned)
    text: str = signed.as_json()
    return text


@pytest.mark.parametrize("content", AWKWARD_CONTENT)
def test_events_signed_by_nostr_sdk_verify_with_ours(content: str) -> None:
    keys = nostr_sdk.Keys.generate()
    tags = [["t", "x"], ["u", "https://h.example/p?q=1&r=é"], ["multi", "a", "b", ""]]
    event = Event.from_json(_sdk_sign(keys, 1, content, tags, 1_700_000_000))
    assert event.content == content
    assert event.verify().hex == keys.public_key().to_hex()


@pytest.mark.parametrize("content", AWKWARD_CONTENT)
def test_events_we_sign_verify_with_nostr_sdk(content: str) -> None:
    secret = SecretKey.generate()
    tags = [["t", "x"], ["e", "a" * 64, "wss://r.example"], ["emoji", "😀"]]
    ours = sign_event(secret, kind=1, created_at=1_700_000_000, content=content, tags=tags)
    theirs = nostr_sdk.Event.from_json(ours.to_json())
    assert theirs.verify()
    assert theirs.id().to_hex() == ours.id
    assert theirs.author().to_hex() == secret.public_key().hex


def test_tampered_events_fail_in_both_implementations() -> None:
    ours = sign_event(SecretKey.generate(), kind=1, created_at=1, content="x")
    tampered = Event.from_dict(ours.to_dict() | {"content": "y"})
    assert not tampered.is_valid()
    assert not nostr_sdk.Event.from_json(tampered.to_json()).verify_id()


def test_nip98_header_from_a_nostr_sdk_signed_event_verifies() -> None:
    keys = nostr_sdk.Keys.generate()
    url = "https://control.example/api/sync/token"
    event = Event.from_json(_sdk_sign(keys, 27235, "", [["u", url], ["method", "POST"]], 1_700_000_000))
    header = encode_authorization_header(event)
    assert verify_http_auth(header, url, "POST", None, 1_700_000_010).hex == keys.public_key().to_hex()


def test_our_nip98_event_verifies_with_nostr_sdk() -> None:
    event = build_http_auth_event(
        SecretKey.generate(), url="https://x.example/a", method="POST", created_at=1, body=b"{}"
    )
    assert nostr_sdk.Event.from_json(event.to_json()).verify()


def test_key_encodings_agree() -> None:
    for _ in range(20):
        keys = nostr_sdk.Keys.generate()
        secret = SecretKey.from_hex(keys.secret_key().to_hex())
        assert secret.public_key().hex == keys.public_key().to_hex()
        assert secret.public_key().npub == keys.public_key().to_bech32()
        assert secret.reveal_nsec() == keys.secret_key().to_bech32()
        assert PublicKey.from_npub(keys.public_key().to_bech32()) == secret.public_key()
        assert SecretKey.from_nsec(keys.secret_key().to_bech32()) == secret
