"""NIP-01 events: exact canonical serialization, id, sign/verify, and strict parsing with typed errors."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from autopilot_sync.nostr import (
    Event,
    EventErrorCode,
    NostrEventError,
    SecretKey,
    compute_event_id,
    serialize_for_id,
    sign_event,
)

SECRET = SecretKey.from_hex("67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa")
PUBKEY = SECRET.public_key().hex


def test_serialization_escapes_exactly_what_nip01_says() -> None:
    content = 'q"b\\s\nn\rr\tt\bb\ff\x01\x1fé😀\u2028\x7f/<'
    tags = [["e", "x"], ["t", "multi", "values"]]
    got = serialize_for_id(PUBKEY, 1700000000, 1, tags, content)
    expected = (
        f'[0,"{PUBKEY}",1700000000,1,[["e","x"],["t","multi","values"]],'
        '"q\\"b\\\\s\\nn\\rr\\tt\\bb\\ff\\u0001\\u001fé😀\u2028\x7f/<"]'
    ).encode()
    assert got == expected
    assert compute_event_id(PUBKEY, 1700000000, 1, tags, content) == hashlib.sha256(expected).hexdigest()


def test_non_ascii_is_written_as_utf8_not_escaped() -> None:
    raw = serialize_for_id(PUBKEY, 0, 1, [], "日本語")
    assert "日本語".encode() in raw
    assert b"\\u" not in raw


def test_signed_event_verifies_and_returns_its_signer() -> None:
    event = sign_event(SECRET, kind=1, created_at=1700000000, content="hello", tags=[["t", "x"]])
    assert event.pubkey == PUBKEY
    assert event.id == event.computed_id()
    assert event.verify() == SECRET.public_key()
    assert event.is_valid()


def test_deterministic_aux_randomness_gives_a_reproducible_signature() -> None:
    first = sign_event(SECRET, kind=1, created_at=1, content="x", aux_randomness=bytes(32))
    second = sign_event(SECRET, kind=1, created_at=1, content="x", aux_randomness=bytes(32))
    assert first == second
    assert sign_event(SECRET, kind=1, created_at=1, content="x") != first  # fresh aux by default


@pytest.mark.parametrize(
    "change",
    [
        {"content": "tampered"},
        {"created_at": 1700000001},
        {"kind": 2},
        {"tags": (("t", "y"),)},
    ],
)
def test_changing_any_signed_field_breaks_the_id(change: dict[str, Any]) -> None:
    event = sign_event(SECRET, kind=1, created_at=1700000000, content="hello", tags=[["t", "x"]])
    fields = event.to_dict() | change
    fields["tags"] = [list(t) for t in fields["tags"]]
    with pytest.raises(NostrEventError) as err:
        Event.from_dict(fields).verify()
    assert err.value.code is EventErrorCode.BAD_ID


def test_a_signature_by_another_key_is_refused() -> None:
    event = sign_event(SECRET, kind=1, created_at=1, content="x")
    forged_sig = SecretKey.generate().sign_schnorr(bytes.fromhex(event.id)).hex()
    forged = Event.from_dict(event.to_dict() | {"sig": forged_sig})
    with pytest.raises(NostrEventError) as err:
        forged.verify()
    assert err.value.code is EventErrorCode.BAD_SIGNATURE
    assert not forged.is_valid()


def test_a_pubkey_off_the_curve_is_a_bad_signature() -> None:
    pubkey = "ff" * 32
    event_id = compute_event_id(pubkey, 1, 1, [], "")
    event = Event(event_id, pubkey, 1, 1, (), "", "00" * 64)
    with pytest.raises(NostrEventError) as err:
        event.verify()
    assert err.value.code is EventErrorCode.BAD_SIGNATURE


def test_json_round_trip() -> None:
    event = sign_event(SECRET, kind=27235, created_at=5, content='"é"\n', tags=[["u", "https://x/?a=1"]])
    assert Event.from_json(event.to_json()) == event
    assert Event.from_json(event.to_json().encode()) == event
    assert json.loads(event.to_json()) == event.to_dict()


def _valid() -> dict[str, Any]:
    return sign_event(SECRET, kind=1, created_at=1700000000, content="c", tags=[["t", "x"]]).to_dict()


@pytest.mark.parametrize(
    ("mutate", "code", "field"),
    [
        (lambda d: d.pop("sig"), EventErrorCode.MISSING_FIELD, "sig"),
        (lambda d: d.update(extra=1), EventErrorCode.UNKNOWN_FIELD, "extra"),
        (lambda d: d.update(id=d["id"].upper()), EventErrorCode.INVALID_HEX, "id"),
        (lambda d: d.update(pubkey=d["pubkey"][:62]), EventErrorCode.INVALID_HEX, "pubkey"),
        (lambda d: d.update(sig=d["sig"] + "00"), EventErrorCode.INVALID_HEX, "sig"),
        (lambda d: d.update(id=123), EventErrorCode.WRONG_TYPE, "id"),
        (lambda d: d.update(created_at="1700000000"), EventErrorCode.WRONG_TYPE, "created_at"),
        (lambda d: d.update(created_at=1700000000.0), EventErrorCode.WRONG_TYPE, "created_at"),
        (lambda d: d.update(created_at=True), EventErrorCode.WRONG_TYPE, "created_at"),
        (lambda d: d.update(created_at=-1), EventErrorCode.OUT_OF_RANGE, "created_at"),
        (lambda d: d.update(kind=65536), EventErrorCode.OUT_OF_RANGE, "kind"),
        (lambda d: d.update(kind=None), EventErrorCode.WRONG_TYPE, "kind"),
        (lambda d: d.update(tags={}), EventErrorCode.WRONG_TYPE, "tags"),
        (lambda d: d.update(tags=["t"]), EventErrorCode.WRONG_TYPE, "tags"),
        (lambda d: d.update(tags=[[]]), EventErrorCode.WRONG_TYPE, "tags"),
        (lambda d: d.update(tags=[["t", None]]), EventErrorCode.WRONG_TYPE, "tags"),
        (lambda d: d.update(tags=[["t", 1]]), EventErrorCode.WRONG_TYPE, "tags"),
        (lambda d: d.update(content=None), EventErrorCode.WRONG_TYPE, "content"),
        (lambda d: d.update(content="\ud800"), EventErrorCode.INVALID_TEXT, "content"),
    ],
)
def test_parse_refuses_malformed_events_with_a_typed_code(mutate: Any, code: EventErrorCode, field: str) -> None:
    data = _valid()
    mutate(data)
    with pytest.raises(NostrEventError) as err:
        Event.from_dict(data)
    assert err.value.code is code
    assert err.value.field == field


@pytest.mark.parametrize("obj", [[], "event", None, 1])
def test_parse_refuses_non_objects(obj: object) -> None:
    with pytest.raises(NostrEventError) as err:
        Event.from_dict(obj)
    assert err.value.code is EventErrorCode.NOT_AN_OBJECT


@pytest.mark.parametrize(
    "text",
    [
        "{",
        '{"id": NaN}',
        b"\xff\xfe",
        '{"id":"a","id":"b"}',  # duplicate keys: which one was signed?
    ],
)
def test_parse_refuses_invalid_json(text: str | bytes) -> None:
    with pytest.raises(NostrEventError) as err:
        Event.from_json(text)
    assert err.value.code is EventErrorCode.INVALID_JSON


def test_lone_surrogate_escaped_in_json_is_refused() -> None:
    data = json.dumps(_valid() | {"content": "x"}).replace('"content": "x"', '"content": "\\ud83d"')
    with pytest.raises(NostrEventError) as err:
        Event.from_json(data)
    assert err.value.code is EventErrorCode.INVALID_TEXT


def test_tags_named_finds_every_tag_with_that_name() -> None:
    event = sign_event(SECRET, kind=1, created_at=1, tags=[["p", "a"], ["e", "b"], ["p", "c", "relay"]])
    assert event.tags_named("p") == (("p", "a"), ("p", "c", "relay"))
    assert event.tags_named("x") == ()
