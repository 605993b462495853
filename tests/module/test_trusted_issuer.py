"""The module refuses claims from any issuer but the one its owner trusts (issue 18 item 2, the issuer check).

A real SpacetimeDB accepts a token from any OIDC issuer, so a `scopes` claim is only worth what its issuer is: the
owner names the control service with `set_trusted_issuer`, and from then on every scoped reducer and
`client_connected` refuse a token with another `iss` (docs/security.md "The trusted issuer"). Run through the real
engine with verified-claims callers.
"""

from __future__ import annotations

import pytest
from sync_module_helpers import PUBLISHER, caller, event

from autopilot_sync.contract.codes import SyncErrorCode, parse_error_code
from autopilot_sync.host.call_outcome import CallStatus
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.engine import ConnectionRejectedError, HostEngine
from autopilot_sync.module.limits import DEFAULT_LIMITS
from autopilot_sync.sync_bindings import SyncConfig

CONTROL = "https://control.example"


def owner(engine: HostEngine) -> Caller:
    return Caller(engine.owner_identity)


async def refusal(engine: HostEngine, reducer: str, args: tuple[object, ...], who: Caller) -> str | None:
    outcome = await engine.call_reducer(reducer, args, who)
    if outcome.status is CallStatus.COMMITTED:
        return None
    assert outcome.status is CallStatus.USER_ERROR, outcome.message
    return outcome.message


def config(engine: HostEngine) -> SyncConfig:
    (row,) = engine.datastore["sync_config"].rows.values()
    return SyncConfig.from_values(row)


async def test_tokens_of_another_issuer_are_refused_once_the_owner_names_the_trusted_issuer(engine: HostEngine) -> None:
    assert await refusal(engine, "append_sync_events", ([event("s", 1, {})],), PUBLISHER) is None  # none named yet
    assert await refusal(engine, "set_trusted_issuer", (CONTROL,), owner(engine)) is None
    assert config(engine).trusted_issuer == CONTROL

    stranger = caller(["sync.append", "sync.admin", "sync.subscribe"], iss="https://evil.example", conn=7)
    message = await refusal(engine, "append_sync_events", ([event("s", 2, {})],), stranger)
    assert message == "unauthorized: token issuer https://evil.example is not the issuer this database trusts"
    for reducer, args in (
        ("append_sync_event", tuple(event("s", 2, {}))),
        ("trim_stream", ("s", 1)),
        ("reset_stream", ("s",)),
        ("grant_stream_readers", ("s", [])),
        ("revoke_stream_reader", ("s", stranger.identity)),
    ):
        refused = await refusal(engine, reducer, args, stranger)
        assert refused is not None and parse_error_code(refused) is SyncErrorCode.UNAUTHORIZED, reducer
    no_issuer = await refusal(engine, "append_sync_events", ([event("s", 2, {})],), PUBLISHER)
    assert no_issuer == "unauthorized: token issuer (none) is not the issuer this database trusts"
    with pytest.raises(ConnectionRejectedError):
        await engine.connect(stranger)

    trusted = caller(["sync.append", "sync.subscribe"], iss=CONTROL, conn=8)
    assert await refusal(engine, "append_sync_events", ([event("s", 2, {})],), trusted) is None
    await engine.connect(trusted)
    assert len(engine.datastore["active_connection"]) == 1


async def test_only_the_owner_names_the_trusted_issuer_and_within_bounds(engine: HostEngine) -> None:
    refused = await refusal(engine, "set_trusted_issuer", (CONTROL,), PUBLISHER)
    assert refused == "unauthorized: set_trusted_issuer is for the database owner only"
    too_long = await refusal(engine, "set_trusted_issuer", ("x" * 513,), owner(engine))
    assert too_long == "invalid_limits: trusted issuer is 513 bytes, limit 512"
    assert config(engine).trusted_issuer == ""


async def test_changing_the_limits_keeps_the_trusted_issuer(engine: HostEngine) -> None:
    assert await refusal(engine, "set_trusted_issuer", (CONTROL,), owner(engine)) is None
    assert await refusal(engine, "set_sync_limits", DEFAULT_LIMITS.as_tuple(), owner(engine)) is None
    assert config(engine).trusted_issuer == CONTROL
    assert await refusal(engine, "set_trusted_issuer", ("",), owner(engine)) is None  # "" turns the check off
    assert await refusal(engine, "append_sync_events", ([event("s", 1, {})],), PUBLISHER) is None
