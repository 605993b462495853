"""Property: for any key, kind, timestamp, tags and content, sign -> serialize -> parse -> verify holds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from autopilot_sync.nostr import Event, SecretKey, sign_event
from autopilot_sync.nostr.event import MAX_CREATED_AT, MAX_KIND

CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

secrets = st.integers(min_value=1, max_value=CURVE_ORDER - 1).map(lambda n: SecretKey(n.to_bytes(32, "big")))
# any Unicode scalar value: everything except lone surrogates, which are not text
text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40)
tags = st.lists(st.lists(text, min_size=1, max_size=4), max_size=5)


@settings(max_examples=150, deadline=None)
@given(
    secret=secrets,
    kind=st.integers(min_value=0, max_value=MAX_KIND),
    created_at=st.integers(min_value=0, max_value=MAX_CREATED_AT),
    tag_list=tags,
    content=text,
)
def test_signed_events_survive_the_wire_and_verify(
    secret: SecretKey, kind: int, created_at: int, tag_list: list[list[str]], content: str
) -> None:
    event = sign_event(secret, kind=kind, created_at=created_at, tags=tag_list, content=content)
    parsed = Event.from_json(event.to_json().encode("utf-8"))
    assert parsed == event
    assert parsed.verify() == secret.public_key()


@settings(max_examples=100, deadline=None)
@given(secret=secrets, content=text, other=text)
def test_any_content_change_is_detected(secret: SecretKey, content: str, other: str) -> None:
    event = sign_event(secret, kind=1, created_at=1, content=content)
    changed = Event.from_dict(event.to_dict() | {"content": other})
    assert changed.is_valid() == (other == content)


@settings(max_examples=100, deadline=None)
@given(secret=secrets)
def test_key_forms_round_trip(secret: SecretKey) -> None:
    public = secret.public_key()
    assert SecretKey.parse(secret.reveal_nsec()) == secret
    assert SecretKey.parse(secret.reveal_hex()) == secret
    assert public.__class__.parse(public.npub) == public
    assert public.__class__.parse(public.hex) == public
