"""NIP-98 HTTP auth: every refusal has its own code, and the NIP's own example is checked field by field."""

from __future__ import annotations

import base64
import json

import pytest

from autopilot_sync.nostr import (
    AuthErrorCode,
    Event,
    NostrAuthError,
    ReplayGuard,
    SecretKey,
    build_http_auth_event,
    compute_event_id,
    decode_authorization_header,
    encode_authorization_header,
    sign_event,
    verify_http_auth,
)
from autopilot_sync.nostr.nip98 import HTTP_AUTH_KIND, payload_hash

SECRET = SecretKey.from_hex("0b7d3c5e4a1f2e6d8c9b0a1f2e3d4c5b6a79808f7e6d5c4b3a29180f7e6d5c4b")
URL = "https://control.example/api/sync/token?client=desktop"
NOW = 1_750_000_000
BODY = b'{"scopes":["sync.subscribe"]}'
UPPER_HASH = payload_hash(BODY).upper()


def _header(event: Event) -> str:
    return encode_authorization_header(event)


def _good(**overrides: object) -> str:
    args: dict[str, object] = {"url": URL, "method": "POST", "created_at": NOW, "body": BODY}
    args.update(overrides)
    return _header(build_http_auth_event(SECRET, **args))  # type: ignore[arg-type]


def _raw_header(obj: object) -> str:
    return "Nostr " + base64.b64encode(json.dumps(obj).encode()).decode()


def _tampered(field: str, value: object) -> str:
    data = build_http_auth_event(SECRET, url=URL, method="POST", created_at=NOW, body=BODY).to_dict()
    data[field] = value
    return _raw_header(data)


def _signed_by_other_key() -> str:
    event = build_http_auth_event(SECRET, url=URL, method="POST", created_at=NOW, body=BODY)
    sig = SecretKey.generate().sign_schnorr(bytes.fromhex(event.id)).hex()
    return _header(Event.from_dict(event.to_dict() | {"sig": sig}))


def _off_curve_pubkey() -> str:
    event = build_http_auth_event(SECRET, url=URL, method="POST", created_at=NOW, body=BODY)
    pubkey = "ff" * 32
    event_id = compute_event_id(pubkey, event.created_at, event.kind, event.tags, event.content)
    return _header(Event(event_id, pubkey, event.created_at, event.kind, event.tags, event.content, event.sig))


def _with_tags(tags: list[list[str]], kind: int = HTTP_AUTH_KIND) -> str:
    return _header(sign_event(SECRET, kind=kind, created_at=NOW, tags=tags))


# code -> cases: (description, header, body); each must fail with exactly that code.
CASES: dict[AuthErrorCode, list[tuple[str, str | None, bytes | None]]] = {
    AuthErrorCode.MISSING: [("no header", None, BODY), ("blank header", "   ", BODY)],
    AuthErrorCode.MALFORMED: [
        ("other scheme", "Bearer abc", BODY),
        ("scheme only", "Nostr", BODY),
        ("not base64", "Nostr !!!notbase64!!!", BODY),
        ("base64 of non-JSON", "Nostr " + base64.b64encode(b"hello").decode(), BODY),
        ("JSON array", _raw_header([1, 2]), BODY),
        ("uppercase id", _tampered("id", "A" * 64), BODY),
        ("unknown field", _tampered("extra", 1), BODY),
        ("duplicate u tag", _with_tags([["u", URL], ["u", URL], ["method", "POST"]]), None),
        ("u tag without value", _with_tags([["u"], ["method", "POST"]]), None),
        ("oversized header", "Nostr " + "A" * 20000, BODY),
    ],
    AuthErrorCode.BAD_KIND: [("kind 1", _with_tags([["u", URL], ["method", "POST"]], kind=1), None)],
    AuthErrorCode.EXPIRED: [
        ("61 s old", _good(created_at=NOW - 61), BODY),
        ("61 s in the future", _good(created_at=NOW + 61), BODY),
    ],
    AuthErrorCode.WRONG_URL: [
        ("other path", _good(url="https://control.example/api/sync/other?client=desktop"), BODY),
        ("query dropped", _good(url="https://control.example/api/sync/token"), BODY),
        ("http instead of https", _good(url=URL.replace("https", "http")), BODY),
        ("no u tag", _with_tags([["method", "POST"]]), None),
    ],
    AuthErrorCode.WRONG_METHOD: [
        ("GET signed, POST sent", _good(method="GET"), BODY),
        ("lowercase method", _good(method="post"), BODY),
        ("no method tag", _with_tags([["u", URL]]), None),
    ],
    AuthErrorCode.WRONG_PAYLOAD: [
        ("body changed", _good(), BODY + b" "),
        ("body with no payload tag", _good(body=None), BODY),
        ("payload tag but no body", _good(), None),
        ("uppercase payload hex", _with_tags([["u", URL], ["method", "POST"], ["payload", UPPER_HASH]]), BODY),
    ],
    AuthErrorCode.BAD_SIGNATURE: [
        ("signed by another key", _signed_by_other_key(), BODY),
        ("pubkey off the curve", _off_curve_pubkey(), BODY),
    ],
    AuthErrorCode.BAD_ID: [("content changed after signing", _tampered("content", "x"), BODY)],
}  # fmt: skip


def _case_params() -> list[object]:
    return [
        pytest.param(code, header, body, id=f"{code.value}: {name}")
        for code, cases in CASES.items()
        for name, header, body in cases
    ]


@pytest.mark.parametrize(("code", "header", "body"), _case_params())
def test_each_refusal_has_its_own_code(code: AuthErrorCode, header: str | None, body: bytes | None) -> None:
    with pytest.raises(NostrAuthError) as err:
        verify_http_auth(header, URL, "POST", body, NOW)
    assert err.value.code is code, err.value


def test_replay_is_refused_with_its_code() -> None:
    guard = ReplayGuard()
    header = _good()
    verify_http_auth(header, URL, "POST", BODY, NOW, replay_guard=guard)
    with pytest.raises(NostrAuthError) as err:
        verify_http_auth(header, URL, "POST", BODY, NOW + 1, replay_guard=guard)
    assert err.value.code is AuthErrorCode.REPLAYED


def test_every_auth_error_code_is_tested() -> None:
    assert set(CASES) | {AuthErrorCode.REPLAYED} == set(AuthErrorCode)


def test_a_valid_request_returns_the_signer() -> None:
    assert verify_http_auth(_good(), URL, "POST", BODY, NOW) == SECRET.public_key()


@pytest.mark.parametrize("skew", [-60, 0, 60])
def test_created_at_within_60_seconds_either_way_is_accepted(skew: int) -> None:
    assert verify_http_auth(_good(created_at=NOW + skew), URL, "POST", BODY, NOW) == SECRET.public_key()


def test_a_bodyless_get_needs_no_payload_tag() -> None:
    header = _good(method="GET", body=None)
    assert verify_http_auth(header, URL, "GET", None, NOW) == SECRET.public_key()
    assert verify_http_auth(header, URL, "GET", b"", NOW) == SECRET.public_key()


def test_auth_scheme_is_case_insensitive() -> None:
    header = _good().replace("Nostr ", "nostr ", 1)
    assert verify_http_auth(header, URL, "POST", BODY, NOW) == SECRET.public_key()


def test_the_forged_pubkey_never_comes_back() -> None:
    """A header naming someone else's pubkey with our signature must not authenticate as them."""
    victim = SecretKey.generate().public_key().hex
    with pytest.raises(NostrAuthError) as err:
        verify_http_auth(_tampered("pubkey", victim), URL, "POST", BODY, NOW)
    assert err.value.code is AuthErrorCode.BAD_ID


def test_header_round_trip() -> None:
    event = build_http_auth_event(SECRET, url=URL, method="PUT", created_at=NOW, body=b"x")
    assert decode_authorization_header(encode_authorization_header(event)) == event
    assert event.tags == (("u", URL), ("method", "PUT"), ("payload", payload_hash(b"x")))
    assert event.content == ""


# The example event printed in NIP-98 (with the `u` tag the text defines).
NIP98_EXAMPLE = {
    "id": "fe964e758903360f28d8424d092da8494ed207cba823110be3a57dfe4b578734",
    "pubkey": "63fe6318dc58583cfe16810f86dd09e18bfd76aabc24a0081ce2856f330504ed",
    "content": "",
    "kind": 27235,
    "created_at": 1682327852,
    "tags": [["u", "https://api.snort.social/api/v1/n5sp/list"], ["method", "GET"]],
    "sig": "5ed9d8ec958bc854f997bdc24ac337d005af372324747efe4a00e24f4c30437f"
    "f4dd8308684bed467d9d6be3e5a517bb43b1732cc7d33949a3aaf86705c22184",
}
# The example Authorization header printed in NIP-98 (its event still uses the older tag name `url`).
NIP98_EXAMPLE_HEADER = (
    "Nostr eyJpZCI6ImZlOTY0ZTc1ODkwMzM2MGYyOGQ4NDI0ZDA5MmRhODQ5NGVkMjA3Y2JhODIzMTEwYmUzYTU3ZGZlNGI1Nzg3MzQiLCJwdWJrZXki"
    "OiI2M2ZlNjMxOGRjNTg1ODNjZmUxNjgxMGY4NmRkMDllMThiZmQ3NmFhYmMyNGEwMDgxY2UyODU2ZjMzMDUwNGVkIiwiY29udGVudCI6IiIsImtpbm"
    "QiOjI3MjM1LCJjcmVhdGVkX2F0IjoxNjgyMzI3ODUyLCJ0YWdzIjpbWyJ1cmwiLCJodHRwczovL2FwaS5zbm9ydC5zb2NpYWwvYXBpL3YxL241c3Av"
    "bGlzdCJdLFsibWV0aG9kIiwiR0VUIl1dLCJzaWciOiI1ZWQ5ZDhlYzk1OGJjODU0Zjk5N2JkYzI0YWMzMzdkMDA1YWYzNzIzMjQ3NDdlZmU0YTAwZT"
    "I0ZjRjMzA0MzdmZjRkZDgzMDg2ODRiZWQ0NjdkOWQ2YmUzZTVhNTE3YmI0M2IxNzMyY2M3ZDMzOTQ5YTNhYWY4NjcwNWMyMjE4NCJ9"
)
NIP98_URL = "https://api.snort.social/api/v1/n5sp/list"


def test_nip98_example_event_id_is_recomputed_not_trusted() -> None:
    """The printed id belongs to the `url`-tag version; with the `u` tag the fields hash to a different id."""
    event = Event.from_dict(NIP98_EXAMPLE)
    assert event.computed_id() == "2dd2dfec3df85dd0d4c32af50241f56a077b0969cb508f987afac1e25b0d4c76"
    assert event.computed_id() != event.id
    with pytest.raises(NostrAuthError) as err:
        verify_http_auth(_raw_header(NIP98_EXAMPLE), NIP98_URL, "GET", None, event.created_at)
    assert err.value.code is AuthErrorCode.BAD_ID


def test_nip98_example_header_is_authentic_but_lacks_a_u_tag() -> None:
    event = decode_authorization_header(NIP98_EXAMPLE_HEADER)
    assert event.tags == (("url", NIP98_URL), ("method", "GET"))
    assert event.computed_id() == NIP98_EXAMPLE["id"]  # a real third-party signature over our serialization
    assert event.verify().hex == NIP98_EXAMPLE["pubkey"]
    with pytest.raises(NostrAuthError) as err:
        verify_http_auth(NIP98_EXAMPLE_HEADER, NIP98_URL, "GET", None, event.created_at)
    assert err.value.code is AuthErrorCode.WRONG_URL
    with pytest.raises(NostrAuthError) as err:
        verify_http_auth(NIP98_EXAMPLE_HEADER, NIP98_URL, "GET", None, NOW)
    assert err.value.code is AuthErrorCode.EXPIRED


def test_error_codes_are_stable_strings() -> None:
    assert [code.value for code in AuthErrorCode] == [
        "missing", "malformed", "bad_kind", "expired", "wrong_url", "wrong_method", "wrong_payload",
        "bad_signature", "bad_id", "replayed",
    ]  # fmt: skip
