"""Admission: a replay never spends its signer's budget, one key's rate is its own, and limits refill over time."""

from __future__ import annotations

import pytest

from autopilot_sync.control.admission import AdmissionControl, AdmissionLimits, KeyRateLimiter
from autopilot_sync.control.client import token_proof
from autopilot_sync.control.errors import ControlError, ControlErrorCode
from autopilot_sync.nostr.event import Event
from autopilot_sync.nostr.keys import SecretKey

URL = "https://control.example/api/sync/token"
NOW = 1_700_000_000


def code_of(
    admission: AdmissionControl, key: SecretKey, now: float, event: Event | None = None
) -> ControlErrorCode | None:
    proof = event or token_proof(key, URL, b"{}", int(now))
    try:
        admission.admit(proof, now)
    except ControlError as exc:
        return exc.code
    return None


def test_replaying_a_captured_proof_does_not_spend_its_signers_budget() -> None:
    admission = AdmissionControl(AdmissionLimits(requests_per_minute=60, burst=2), max_skew=60)
    victim = SecretKey.generate()
    captured = token_proof(victim, URL, b"{}", NOW)
    assert code_of(admission, victim, NOW, captured) is None
    for _ in range(50):
        assert code_of(admission, victim, NOW, captured) is ControlErrorCode.REPLAYED
    assert code_of(admission, victim, NOW) is None  # the victim's second request of its burst still passes


def test_one_keys_rate_is_its_own_and_refills() -> None:
    admission = AdmissionControl(AdmissionLimits(requests_per_minute=60, burst=3), max_skew=60)
    mallory, alice = SecretKey.generate(), SecretKey.generate()
    assert [code_of(admission, mallory, NOW) for _ in range(4)] == [None, None, None, ControlErrorCode.RATE_LIMITED]
    assert code_of(admission, alice, NOW) is None
    assert code_of(admission, mallory, NOW + 1) is None  # one request a second comes back


def test_a_rate_limited_answer_says_when_to_retry() -> None:
    limiter = KeyRateLimiter(requests_per_minute=30, burst=1, tracked_keys=10)
    assert limiter.take("k", 0.0) == 0.0
    assert limiter.take("k", 0.0) == pytest.approx(2.0)  # one request every 2 s


def test_forgetting_idle_keys_keeps_the_limiter_bounded() -> None:
    limiter = KeyRateLimiter(requests_per_minute=60, burst=1, tracked_keys=3)
    for key in "abcde":
        limiter.take(key, 0.0)
    assert len(limiter._buckets) == 3
