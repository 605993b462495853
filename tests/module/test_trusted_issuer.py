"""The module refuses claims from any issuer but the one its owner trusts, and every claim before it names one.

A real SpacetimeDB accepts a token from any OIDC issuer, so a `scopes` claim is only worth what its issuer is: the
owner names the control service with `set_trusted_issuer`, and from then on every scoped reducer and
`client_connected` refuse a token with another `iss`; before it does, they refuse every token (fail closed,
`issuer_not_configured`), but never the owner naming the issuer (docs/security.md "The trusted issuer"). Run through
the real engine with verified-claims callers, on both modules.
"""

from __future__ import annotations

import pytest
from sync_module_helpers import ADMIN, PUBLISHER, READER, TEST_ISSUER, caller, event

from autopilot_sync.contract.codes import SyncErrorCode, parse_error_code
from autopilot_sync.host.call_outcome import CallStatus
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.engine import ConnectionRejectedError, HostEngine
from autopilot_sync.module.limits import DEFAULT_LIMITS
from autopilot_sync.spacetime.values import ConnectionId
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


NOT_CONFIGURED = "issuer_not_configured: this database trusts no token issuer yet: the owner calls set_trusted_issuer"

#: Every reducer that reads claims, with arguments it would otherwise accept or refuse for another reason.
CLAIM_BEARING: tuple[tuple[str, tuple[object, ...], Caller], ...] = (
    ("append_sync_events", ([event("s", 1, {})],), PUBLISHER),
    ("append_sync_event", tuple(event("s", 1, {})), PUBLISHER),
    ("ack_checkpoint", ("s", 0), READER),
    ("trim_stream", ("s", 1), ADMIN),
    ("reset_stream", ("s",), ADMIN),
    ("grant_stream_readers", ("s", []), PUBLISHER),
    ("revoke_stream_reader", ("s", READER.identity), ADMIN),
)


async def test_a_database_whose_owner_named_no_issuer_refuses_every_claim_bearing_call_naming_the_fix(
    unconfigured_engine: HostEngine,
) -> None:
    engine = unconfigured_engine
    for reducer, args, who in CLAIM_BEARING:
        assert await refusal(engine, reducer, args, who) == NOT_CONFIGURED, reducer
    with pytest.raises(ConnectionRejectedError, match="issuer_not_configured"):
        await engine.connect(READER)
    with pytest.raises(ConnectionRejectedError, match="issuer_not_configured"):
        await engine.connect(PUBLISHER)
    assert len(engine.datastore["active_connection"]) == 0 and len(engine.datastore["sync_event"]) == 0
    assert parse_error_code(NOT_CONFIGURED) is SyncErrorCode.ISSUER_NOT_CONFIGURED


async def test_the_owner_connects_and_names_the_issuer_before_any_is_trusted_then_claims_count(
    unconfigured_engine: HostEngine,
) -> None:
    engine = unconfigured_engine
    the_owner = Caller(engine.owner_identity, ConnectionId(42), {"iss": "https://wherever.example", "sub": "owner"})
    await engine.connect(the_owner)  # SpacetimeDB runs client_connected around an HTTP /call too: never refused
    assert len(engine.datastore["active_connection"]) == 0  # no scopes: no sync client, no presence
    assert await refusal(engine, "set_trusted_issuer", (TEST_ISSUER,), the_owner) is None
    await engine.disconnect(the_owner)
    assert await refusal(engine, "append_sync_events", ([event("s", 1, {})],), PUBLISHER) is None
    await engine.connect(READER)
    assert len(engine.datastore["active_connection"]) == 1
    assert await refusal(engine, "set_trusted_issuer", ("",), owner(engine)) is None  # "" trusts none again
    assert await refusal(engine, "append_sync_events", ([event("s", 2, {})],), PUBLISHER) == NOT_CONFIGURED


async def test_tokens_of_another_issuer_are_refused_once_the_owner_names_the_trusted_issuer(
    unconfigured_engine: HostEngine,
) -> None:
    engine = unconfigured_engine
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
    wrong = await refusal(engine, "append_sync_events", ([event("s", 2, {})],), PUBLISHER)
    assert wrong == f"unauthorized: token issuer {TEST_ISSUER} is not the issuer this database trusts"
    without = caller(["sync.append"], ident=3, conn=3, iss=None)
    no_issuer = await refusal(engine, "append_sync_events", ([event("s", 2, {})],), without)
    assert no_issuer == "unauthorized: token issuer (none) is not the issuer this database trusts"
    with pytest.raises(ConnectionRejectedError):
        await engine.connect(stranger)

    trusted = caller(["sync.append", "sync.subscribe"], iss=CONTROL, conn=8)
    assert await refusal(engine, "append_sync_events", ([event("s", 1, {})],), trusted) is None
    await engine.connect(trusted)
    assert len(engine.datastore["active_connection"]) == 1


async def test_only_the_owner_names_the_trusted_issuer_and_within_bounds(unconfigured_engine: HostEngine) -> None:
    engine = unconfigured_engine
    refused = await refusal(engine, "set_trusted_issuer", (CONTROL,), PUBLISHER)
    assert refused == "unauthorized: set_trusted_issuer is for the database owner only"
    too_long = await refusal(engine, "set_trusted_issuer", ("x" * 513,), owner(engine))
    assert too_long == "invalid_limits: trusted issuer is 513 bytes, limit 512"
    assert config(engine).trusted_issuer == ""


async def test_changing_the_limits_keeps_the_trusted_issuer(engine: HostEngine) -> None:
    assert await refusal(engine, "set_trusted_issuer", (CONTROL,), owner(engine)) is None
    assert await refusal(engine, "set_sync_limits", DEFAULT_LIMITS.as_tuple(), owner(engine)) is None
    assert config(engine).trusted_issuer == CONTROL
