"""NIP-42: a kind 22242 event answers one relay's one challenge, and nothing else."""

from __future__ import annotations

import pytest

from autopilot_sync.nostr import (
    Event,
    RelayAuthError,
    RelayAuthErrorCode,
    SecretKey,
    build_relay_auth_event,
    sign_event,
    verify_relay_auth,
)
from autopilot_sync.nostr.nip42 import normalize_relay_url

SECRET = SecretKey.generate()
RELAY = "wss://relay.example.com/"
CHALLENGE = "challengestringhere"
NOW = 1_750_000_000


def _auth(**overrides: object) -> Event:
    args: dict[str, object] = {"relay_url": RELAY, "challenge": CHALLENGE, "created_at": NOW}
    args.update(overrides)
    return build_relay_auth_event(SECRET, **args)  # type: ignore[arg-type]


def _verify(event: Event) -> None:
    verify_relay_auth(event, relay_url=RELAY, challenge=CHALLENGE, now=NOW)


def test_a_correct_answer_returns_the_signer() -> None:
    event = _auth()
    assert event.kind == 22242
    assert event.tags == (("relay", RELAY), ("challenge", CHALLENGE))
    assert verify_relay_auth(event, relay_url=RELAY, challenge=CHALLENGE, now=NOW + 600) == SECRET.public_key()


@pytest.mark.parametrize("url", ["wss://RELAY.example.com", "WSS://relay.example.com:443/", "wss://relay.example.com"])
def test_relay_url_is_compared_after_normalization(url: str) -> None:
    assert verify_relay_auth(_auth(relay_url=url), relay_url=RELAY, challenge=CHALLENGE, now=NOW)


def _forged_sig() -> Event:
    event = _auth()
    return Event.from_dict(event.to_dict() | {"sig": SecretKey.generate().sign_schnorr(bytes.fromhex(event.id)).hex()})


CASES = {
    RelayAuthErrorCode.MALFORMED: sign_event(SECRET, kind=22242, created_at=NOW, tags=[["relay", RELAY]]),
    RelayAuthErrorCode.BAD_KIND: sign_event(
        SECRET, kind=27235, created_at=NOW, tags=[["relay", RELAY], ["challenge", CHALLENGE]]
    ),
    RelayAuthErrorCode.EXPIRED: _auth(created_at=NOW - 601),
    RelayAuthErrorCode.WRONG_RELAY: _auth(relay_url="wss://relay.example.com:4443/"),
    RelayAuthErrorCode.WRONG_CHALLENGE: _auth(challenge="challengestringhera"),
    RelayAuthErrorCode.BAD_SIGNATURE: _forged_sig(),
    RelayAuthErrorCode.BAD_ID: Event.from_dict(_auth().to_dict() | {"content": "x"}),
}


@pytest.mark.parametrize("code", list(RelayAuthErrorCode), ids=lambda c: c.value)
def test_each_refusal_has_its_own_code(code: RelayAuthErrorCode) -> None:
    with pytest.raises(RelayAuthError) as err:
        _verify(CASES[code])
    assert err.value.code is code


def test_normalize_keeps_paths_and_non_default_ports() -> None:
    assert normalize_relay_url("wss://Relay.Example.com:7777/path") == "wss://relay.example.com:7777/path"
    assert normalize_relay_url("ws://h:80/") == "ws://h"
