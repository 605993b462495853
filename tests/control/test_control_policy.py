"""Scope policy as pure rules: readers get subscribe + checkpoint, allowlisted producers get append + admin too."""

from __future__ import annotations

import pytest
from control_helpers import PRODUCER, READER

from autopilot_sync.control.errors import ControlError, ControlErrorCode
from autopilot_sync.control.policy import PRODUCER_SCOPES, READER_SCOPES, Scope, ScopePolicy
from autopilot_sync.control.request import TtlBounds, parse_token_request
from autopilot_sync.module.auth import Scope as ModuleScope

POLICY = ScopePolicy.from_allowlist([PRODUCER.public_key().hex.upper()])


def test_scope_names_are_the_ones_the_sync_module_checks() -> None:
    assert {scope.value for scope in Scope} == {scope.value for scope in ModuleScope}


def test_reader_may_subscribe_and_write_checkpoints_only() -> None:
    assert POLICY.allowed(READER.public_key()) == READER_SCOPES
    POLICY.check(READER.public_key(), [Scope.SUBSCRIBE, Scope.CHECKPOINT_WRITE])


def test_allowlist_is_compared_case_insensitively_and_grants_everything() -> None:
    assert POLICY.allowed(PRODUCER.public_key()) == READER_SCOPES | PRODUCER_SCOPES
    POLICY.check(PRODUCER.public_key(), list(Scope))


@pytest.mark.parametrize("scope", [Scope.APPEND, Scope.ADMIN])
def test_reader_asking_for_a_producer_scope_is_refused_whole(scope: Scope) -> None:
    with pytest.raises(ControlError) as refused:
        POLICY.check(READER.public_key(), [Scope.SUBSCRIBE, scope])
    assert refused.value.code is ControlErrorCode.SCOPE_NOT_ALLOWED
    assert refused.value.code.status == 403
    assert scope.value in refused.value.message


def test_empty_allowlist_allows_no_producer() -> None:
    with pytest.raises(ControlError):
        ScopePolicy.from_allowlist([]).check(PRODUCER.public_key(), [Scope.APPEND])


def test_duplicates_collapse_in_request_order() -> None:
    body = b'{"scopes":["sync.subscribe","sync.subscribe"],"streams":["a","a","b*"],"client_kind":"cli"}'
    request = parse_token_request(body, TtlBounds(60, 900, 300))
    assert request.scopes == (Scope.SUBSCRIBE,)
    assert request.streams == ("a", "b*")
    assert request.ttl_seconds == 300
