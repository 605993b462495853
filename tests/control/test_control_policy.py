"""Control's policy as pure rules: grants of scopes on stream patterns, from the allowlist default or a policy file."""

from __future__ import annotations

from pathlib import Path

import pytest
from control_helpers import PRODUCER, READER

from autopilot_sync.contract.scopes import PRODUCER_SCOPES, READER_SCOPES, Scope
from autopilot_sync.control.errors import ControlError, ControlErrorCode
from autopilot_sync.control.policy import ScopePolicy
from autopilot_sync.control.policy_file import PolicyFileError, PolicySource, parse_policy
from autopilot_sync.control.request import TtlBounds, parse_token_request
from autopilot_sync.nostr.keys import SecretKey

POLICY = ScopePolicy.from_allowlist([PRODUCER.public_key().hex.upper()])


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


POLICY_FILE = f"""
[groups]
team = ["{READER.public_key().npub}"]

[[grant]]
groups = ["team"]
scopes = ["sync.subscribe", "sync.checkpoint.write"]
streams = ["runtime.run.*", "runtime.fleet.user.alice.*"]

[[grant]]
keys = ["{PRODUCER.public_key().hex}"]
scopes = ["sync.append", "sync.admin", "sync.subscribe"]
streams = ["runtime.*"]
"""


def test_a_request_within_the_policy_gets_exactly_what_it_asked() -> None:
    policy = parse_policy(POLICY_FILE, "policy.toml")
    assert policy.decide(READER.public_key(), [Scope.SUBSCRIBE], ["runtime.run.7.events"]) == ("runtime.run.7.events",)
    assert policy.decide(PRODUCER.public_key(), [Scope.APPEND], ["runtime.run.*"]) == ("runtime.run.*",)


def test_a_request_without_streams_gets_what_the_policy_gives() -> None:
    policy = parse_policy(POLICY_FILE, "policy.toml")
    reader = READER.public_key()
    both = [Scope.SUBSCRIBE, Scope.CHECKPOINT_WRITE]
    assert policy.decide(reader, both, None) == ("runtime.run.*", "runtime.fleet.user.alice.*")
    assert policy.decide(PRODUCER.public_key(), [Scope.APPEND, Scope.SUBSCRIBE], None) == ("runtime.*",)


@pytest.mark.parametrize("streams", [["*"], ["runtime.*"], ["runtime.run.1.events", "runtime.worker.1.lifecycle"]])
def test_asking_for_more_streams_than_the_policy_gives_is_refused_never_narrowed(streams: list[str]) -> None:
    policy = parse_policy(POLICY_FILE, "policy.toml")
    with pytest.raises(ControlError) as refused:
        policy.decide(READER.public_key(), [Scope.SUBSCRIBE], streams)
    assert refused.value.code is ControlErrorCode.STREAM_NOT_ALLOWED
    assert refused.value.code.status == 403


def test_a_key_the_policy_does_not_name_gets_nothing() -> None:
    policy = parse_policy(POLICY_FILE, "policy.toml")
    stranger = SecretKey.generate().public_key()
    with pytest.raises(ControlError) as refused:
        policy.decide(stranger, [Scope.SUBSCRIBE], None)
    assert refused.value.code is ControlErrorCode.SCOPE_NOT_ALLOWED


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[[grant]]\nkeys=['*']\nscopes=['sync.read']\nstreams=['*']", "scopes must be"),
        ("[[grant]]\nkeys=['nope']\nscopes=['sync.subscribe']\nstreams=['*']", "not a Nostr public key"),
        ("[[grant]]\ngroups=['x']\nscopes=['sync.subscribe']\nstreams=['*']", "unknown group"),
        ("[[grant]]\nkeys=['*']\nscopes=['sync.subscribe']\nstreams=['a b']", "streams must be"),
        ("[[grant]]\nkeys=['*']\nscopes=['sync.subscribe']\nstreams=['*']\nread=true", "unknown field"),
        ("[[grants]]\nkeys=['*']", "unknown entry"),
        ("[[grant]\n", "not TOML"),
    ],
)
def test_a_policy_file_that_does_not_say_exactly_what_it_means_is_refused(text: str, reason: str) -> None:
    with pytest.raises(PolicyFileError, match=reason):
        parse_policy(text, "policy.toml")


def test_the_policy_source_rereads_a_changed_file_and_keeps_the_last_good_one(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY_FILE)
    source = PolicySource(path)
    assert Scope.APPEND in source.current().allowed(PRODUCER.public_key())
    path.write_text("[[grant]]\nkeys=['*']\nscopes=['sync.subscribe']\nstreams=['x']\n# longer than before")
    assert source.current().allowed(PRODUCER.public_key()) == {Scope.SUBSCRIBE}
    path.write_text("broken [")
    assert source.current().allowed(PRODUCER.public_key()) == {Scope.SUBSCRIBE}
