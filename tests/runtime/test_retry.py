"""Every failure maps to exactly one retry class, and the backoff is capped full jitter."""

from __future__ import annotations

import random

import pytest

from autopilot_sync.backoff import Backoff
from autopilot_sync.client.reconnect import BackoffPolicy
from autopilot_sync.runtime.retry import FailureKind, PublishFailure, RetryClass, classify, is_outcome_unknown


@pytest.mark.parametrize(
    ("kind", "message", "expected"),
    [
        (FailureKind.NETWORK, "connection reset", RetryClass.TRANSIENT),
        (FailureKind.TIMEOUT, "no answer", RetryClass.TRANSIENT),
        (FailureKind.HOST_UNAVAILABLE, "503", RetryClass.TRANSIENT),
        (FailureKind.INTERNAL_ERROR, "overloaded", RetryClass.TRANSIENT),
        (FailureKind.PROTOCOL, "undecodable_frame: x", RetryClass.TRANSIENT),
        (FailureKind.TOKEN_UNAVAILABLE, "control down", RetryClass.TRANSIENT),
        (FailureKind.TOKEN_REFUSED, "scope_not_allowed", RetryClass.PERMANENT),
        (FailureKind.AUTH_REJECTED, "401", RetryClass.AUTH),
        (FailureKind.REDUCER_ERROR, "sequence_conflict: expected_seq=5 head_seq=2", RetryClass.SEQUENCE_CONFLICT),
        (FailureKind.REDUCER_ERROR, "unauthorized: needs sync.append", RetryClass.AUTH),
        (FailureKind.REDUCER_ERROR, "forbidden_stream: x", RetryClass.AUTH),
        (FailureKind.REDUCER_ERROR, "idempotency_conflict: x", RetryClass.PERMANENT),
        (FailureKind.REDUCER_ERROR, "payload_hash_mismatch: x", RetryClass.PERMANENT),
        (FailureKind.REDUCER_ERROR, "invalid_event: x", RetryClass.PERMANENT),
        (FailureKind.REDUCER_ERROR, "payload_too_large: x", RetryClass.PERMANENT),
        (FailureKind.REDUCER_ERROR, "something nobody documented", RetryClass.PERMANENT),
        (FailureKind.REDUCER_ERROR, "issuer_not_configured: the owner calls set_trusted_issuer", RetryClass.TRANSIENT),
    ],
)
def test_each_failure_has_one_retry_class(kind: FailureKind, message: str, expected: RetryClass) -> None:
    assert classify(PublishFailure(kind, message)) is expected


def test_only_lost_answers_leave_the_outcome_unknown() -> None:
    assert is_outcome_unknown(PublishFailure(FailureKind.TIMEOUT, ""))
    assert is_outcome_unknown(PublishFailure(FailureKind.NETWORK, ""))
    assert not is_outcome_unknown(PublishFailure(FailureKind.REDUCER_ERROR, "invalid_event: x"))


def test_backoff_is_full_jitter_under_a_cap() -> None:
    backoff = Backoff(base=0.1, cap=2.0)
    assert [backoff.ceiling(n) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0]
    assert backoff.ceiling(10_000) == 2.0
    assert backoff.delay(3, lambda low, high: high) == 0.8
    assert backoff.delay(3, lambda low, high: low) == 0.0
    assert all(0.0 <= backoff.delay(n) <= 2.0 for n in range(50))
    with pytest.raises(ValueError):
        Backoff(base=2.0, cap=1.0)


def test_the_sdk_reconnects_and_the_runtime_retries_wait_by_the_same_backoff() -> None:
    policy = BackoffPolicy(base=0.1, cap=2.0)
    assert policy.backoff == Backoff(base=0.1, cap=2.0)
    draws = [random.Random(3), random.Random(3)]
    assert [policy.delay(n, draws[0]) for n in range(8)] == [
        policy.backoff.delay(n, draws[1].uniform) for n in range(8)
    ]


def test_a_connection_the_module_refuses_is_an_auth_rejection_with_the_hosts_reason() -> None:
    # The host upgrades, then closes with client_connected's message (as SpacetimeDB upgrades first): no HTTP 403.
    from autopilot_sync.client import ConnectionRejectedError
    from autopilot_sync.runtime.hostlink import describe_failure

    refused = ConnectionRejectedError(
        "the server refused the connection: unauthorized: connecting needs scope sync.subscribe or sync.append",
        1008,
        "unauthorized: connecting needs scope sync.subscribe or sync.append",
    )
    failure = describe_failure(refused)
    assert failure.kind is FailureKind.AUTH_REJECTED
    assert "connecting needs scope" in failure.message
    assert classify(failure) is RetryClass.AUTH


def test_a_database_that_trusts_no_issuer_yet_is_waited_for_never_dead_lettered() -> None:
    # Between a delete-data publish and the owner naming control again, the module refuses every claim: transient.
    from autopilot_sync.client import ConnectionRejectedError
    from autopilot_sync.runtime.hostlink import describe_failure

    reason = "issuer_not_configured: this database trusts no token issuer yet: the owner calls set_trusted_issuer"
    refused = ConnectionRejectedError(f"the server refused the connection: {reason}", 1008, reason)
    failure = describe_failure(refused)
    assert classify(failure) is RetryClass.TRANSIENT
    assert "set_trusted_issuer" in failure.message
