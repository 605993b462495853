"""What an append reads once per call and the module keeps between calls is never stale.

`module/config.py` keeps the last `sync_config` row's `SyncConfig` and `SyncLimits` (keyed by the stored row's
identity) and `module/auth.require_scope` answers a `scopes` array without building a set: each change of the
configuration (limits, trusted issuer), a refused change (rolled back), and two databases in one process must be
judged exactly as without them (docs/performance.md "Round 6 — percall2"). Through the real engine, both modules.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sync_module_helpers import PUBLISHER, TEST_ISSUER, event

from autopilot_sync.contract.codes import SyncErrorCode, parse_error_code
from autopilot_sync.contract.scopes import Scope, scopes_of
from autopilot_sync.devtools.trust import name_trusted_issuer
from autopilot_sync.host.call_outcome import CallStatus
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.module import module
from autopilot_sync.module.auth import require_scope
from autopilot_sync.module.errors import SyncError
from autopilot_sync.module.limits import DEFAULT_LIMITS

CONTROL = "https://control.example"


async def refusal(engine: HostEngine, reducer: str, args: tuple[object, ...], who: Caller) -> SyncErrorCode | None:
    outcome = await engine.call_reducer(reducer, args, who)
    if outcome.status is CallStatus.COMMITTED:
        return None
    assert outcome.status is CallStatus.USER_ERROR, outcome.message
    return parse_error_code(outcome.message)


def limits(max_batch_events: int) -> tuple[int, ...]:
    values = list(DEFAULT_LIMITS.as_tuple())
    values[1] = max_batch_events
    return tuple(values)


def batch(stream: str, first: int, count: int) -> tuple[object, ...]:
    return ([event(stream, seq, {"n": seq}) for seq in range(first, first + count)],)


async def test_a_changed_limit_judges_the_very_next_append(engine: HostEngine) -> None:
    owner = Caller(engine.owner_identity)
    assert await refusal(engine, "append_sync_events", batch("s", 1, 3), PUBLISHER) is None
    assert await refusal(engine, "set_sync_limits", limits(2), owner) is None
    assert await refusal(engine, "append_sync_events", batch("s", 4, 3), PUBLISHER) is SyncErrorCode.BATCH_TOO_LARGE
    assert await refusal(engine, "append_sync_events", batch("s", 4, 2), PUBLISHER) is None
    assert await refusal(engine, "set_sync_limits", limits(3), owner) is None
    assert await refusal(engine, "append_sync_events", batch("s", 6, 3), PUBLISHER) is None


async def test_a_refused_limit_change_leaves_the_limits_in_force(engine: HostEngine) -> None:
    owner = Caller(engine.owner_identity)
    assert await refusal(engine, "set_sync_limits", limits(2), owner) is None
    assert await refusal(engine, "append_sync_events", batch("s", 1, 3), PUBLISHER) is SyncErrorCode.BATCH_TOO_LARGE
    assert await refusal(engine, "set_sync_limits", limits(0), owner) is SyncErrorCode.INVALID_LIMITS
    assert await refusal(engine, "append_sync_events", batch("s", 1, 3), PUBLISHER) is SyncErrorCode.BATCH_TOO_LARGE
    assert await refusal(engine, "append_sync_events", batch("s", 1, 2), PUBLISHER) is None


async def test_a_changed_trusted_issuer_judges_the_very_next_append(engine: HostEngine) -> None:
    owner = Caller(engine.owner_identity)
    assert await refusal(engine, "append_sync_events", batch("s", 1, 1), PUBLISHER) is None
    assert await refusal(engine, "set_trusted_issuer", (CONTROL,), owner) is None
    assert await refusal(engine, "append_sync_events", batch("s", 2, 1), PUBLISHER) is SyncErrorCode.UNAUTHORIZED
    assert await refusal(engine, "set_trusted_issuer", ("",), owner) is None
    refused = await refusal(engine, "append_sync_event", tuple(event("s", 2, {})), PUBLISHER)
    assert refused is SyncErrorCode.ISSUER_NOT_CONFIGURED
    assert await refusal(engine, "set_trusted_issuer", (TEST_ISSUER,), owner) is None
    assert await refusal(engine, "append_sync_event", tuple(event("s", 2, {})), PUBLISHER) is None


@pytest.fixture
async def second_engine(tmp_path: Path) -> AsyncIterator[HostEngine]:
    """Another database of the Python module in this process, trusting the same issuer."""
    other = HostEngine(module, tmp_path / "second", "second", EngineConfig(fsync=False))
    await other.start()
    await name_trusted_issuer(other, TEST_ISSUER)
    yield other
    await other.stop()


async def test_two_databases_in_one_process_are_each_judged_by_their_own_limits(
    engine: HostEngine, second_engine: HostEngine
) -> None:
    assert await refusal(second_engine, "set_sync_limits", limits(1), Caller(second_engine.owner_identity)) is None
    for first in (1, 3, 5):
        assert await refusal(engine, "append_sync_events", batch("s", first, 2), PUBLISHER) is None
        refused = await refusal(second_engine, "append_sync_events", batch("s", first, 2), PUBLISHER)
        assert refused is SyncErrorCode.BATCH_TOO_LARGE
    assert await refusal(second_engine, "append_sync_events", batch("s", 1, 1), PUBLISHER) is None


_SCOPE_WORDS = st.sampled_from([scope.value for scope in Scope] + ["sync", "sync.append ", "", "SYNC.APPEND"])
_CLAIMS = st.dictionaries(
    st.sampled_from(["scopes", "scope", "iss"]),
    st.one_of(
        st.none(),
        st.integers(),
        st.lists(st.one_of(_SCOPE_WORDS, st.integers())),
        st.lists(_SCOPE_WORDS).map(tuple),
        st.lists(_SCOPE_WORDS).map(" ".join),
    ),
)


@given(claims=_CLAIMS, scope=st.sampled_from(list(Scope)))
def test_the_scope_check_grants_exactly_what_the_claims_scopes_name(claims: dict[str, Any], scope: Scope) -> None:
    granted = scope.value in scopes_of(claims)  # the general reading, as before the array's short path
    try:
        require_scope(claims, scope, "append_sync_events")
    except SyncError as exc:
        assert not granted
        assert str(exc) == f"unauthorized: append_sync_events needs scope {scope.value}"
    else:
        assert granted
