"""One script of calls, two modules, the same answers and the same rows (issue 18 item 3, differential).

The same sequence — every reducer, every error code, duplicates, conflicts, limits, checkpoints, trim and reset,
grants, presence, the owner's configuration and the trusted issuer (failing closed before it is named) — runs on
a fresh engine hosting the Python module and on one hosting the TypeScript twin. Every outcome (status and full
message text) must be equal, and so must every table's rows at the end (decoded from their BSATN, so equal values
are equal bytes), with only the host's clock values (timestamps) masked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sync_module_helpers import ADMIN, PUBLISHER, READER, TEST_ISSUER, caller, event

from autopilot_sync.host.caller import Caller
from autopilot_sync.host.engine import ConnectionRejectedError, EngineConfig, HostEngine
from autopilot_sync.host.hosted_module import HostedModule
from autopilot_sync.host.js_module import JsModule
from autopilot_sync.jsmodule.runner import RunnerLimits
from autopilot_sync.module import module
from autopilot_sync.spacetime.values import ConnectionId, Identity, Timestamp

pytestmark = pytest.mark.node

OWNER = Caller(Identity(0))
OWNER_SESSION = Caller(Identity(0), ConnectionId(40), {"iss": "https://anywhere.example", "sub": "owner"})
CONTROL = "https://control.example"
NARROW = caller(["sync.append"], streams=["runtime.*"], ident=5, conn=5)
ANONYMOUS = caller([], sub="some-uuid", ident=6, conn=6)
STRANGER = caller(["sync.append", "sync.subscribe"], iss="https://evil.example", ident=7, conn=7)
TRUSTED = caller(["sync.append", "sync.subscribe", "sync.admin"], iss=CONTROL, ident=8, conn=8)


def script() -> list[tuple[str, Caller, str, tuple[Any, ...]]]:
    """(kind, caller, reducer, args): kind is `call`, `connect` or `disconnect`."""
    good = event("s", 1, {"a": 1, "text": "héllo ✓"})
    numbers = event("s", 2, [1.5, 1e16, -0.0, 10**20, 1e-7])
    steps: list[tuple[str, Caller, str, tuple[Any, ...]]] = [
        ("call", PUBLISHER, "append_sync_events", ([good],)),  # no issuer named yet: fails closed
        ("call", READER, "ack_checkpoint", ("s", 1)),
        ("connect", READER, "", ()),
        ("connect", OWNER_SESSION, "", ()),  # the owner is admitted without scopes, to name the issuer
        ("call", OWNER_SESSION, "set_trusted_issuer", (TEST_ISSUER,)),
        ("disconnect", OWNER_SESSION, "", ()),
        ("connect", PUBLISHER, "", ()),
        ("connect", READER, "", ()),
        ("connect", ANONYMOUS, "", ()),
        ("call", PUBLISHER, "append_sync_events", ([good, numbers, event("s", 3, 0)],)),
        ("call", PUBLISHER, "append_sync_events", ([good],)),
        ("call", PUBLISHER, "append_sync_events", ([event("s", 4, {"other": True}, key="s:1")],)),
        ("call", PUBLISHER, "append_sync_events", ([event("s", 9, {})],)),
        ("call", PUBLISHER, "append_sync_events", ([event("s", 4, {}), event("s", 5, {}), event("s", 7, {})],)),
        ("call", PUBLISHER, "append_sync_events", ([good._replace(payload_hash="sha256:" + "0" * 64)],)),
        ("call", PUBLISHER, "append_sync_events", ([good._replace(payload="{nope")],)),
        ("call", PUBLISHER, "append_sync_events", ([good._replace(payload='{"a": NaN}')],)),
        ("call", PUBLISHER, "append_sync_events", ([good._replace(payload="[" * 70 + "]" * 70)],)),
        ("call", PUBLISHER, "append_sync_events", ([good._replace(stream_id="")],)),
        ("call", PUBLISHER, "append_sync_events", ([good._replace(kind="k" * 129)],)),
        ("call", PUBLISHER, "append_sync_events", ([good._replace(kind="é" * 100)],)),
        ("call", PUBLISHER, "append_sync_events", ([event("s", 4, {"blob": "x" * 300_000})],)),
        ("call", PUBLISHER, "append_sync_events", ([event("b", i, {}) for i in range(1, 1002)],)),
        ("call", PUBLISHER, "append_sync_event", tuple(event("s", 4, {"single": 1}))),
        ("call", READER, "append_sync_events", ([event("s", 5, {})],)),
        ("call", ANONYMOUS, "append_sync_events", ([event("t", 1, {})],)),
        ("call", NARROW, "append_sync_events", ([event("other", 1, {})],)),
        ("call", NARROW, "append_sync_events", ([event("runtime.x", 1, {})],)),
        ("call", PUBLISHER, "grant_stream_readers", ("s", [READER.identity, READER.identity, ADMIN.identity])),
        ("call", READER, "grant_stream_readers", ("s", [READER.identity])),
        ("call", PUBLISHER, "grant_stream_readers", ("x" * 129, [])),
        ("call", READER, "ack_checkpoint", ("s", 2)),
        ("call", READER, "ack_checkpoint", ("s", 1)),
        ("call", READER, "ack_checkpoint", ("s", 9)),
        ("call", READER, "ack_checkpoint", ("nope", 1)),
        ("call", READER, "ack_checkpoint", ("s", 4)),
        ("call", PUBLISHER, "ack_checkpoint", ("s", 1)),
        ("call", ADMIN, "trim_stream", ("s", 3)),
        ("call", ADMIN, "trim_stream", ("s", 2)),
        ("call", ADMIN, "trim_stream", ("s", 9)),
        ("call", ADMIN, "trim_stream", ("nope", 1)),
        ("call", READER, "trim_stream", ("s", 3)),
        ("call", ADMIN, "reset_stream", ("runtime.x",)),
        ("call", PUBLISHER, "revoke_stream_reader", ("s", ADMIN.identity)),
        ("call", ADMIN, "revoke_stream_reader", ("s", ADMIN.identity)),
        ("call", READER, "heartbeat", ()),
        ("call", PUBLISHER, "set_sync_limits", (262144, 2, 256, 512, 128, 64)),
        ("call", OWNER, "set_sync_limits", (262144, 0, 256, 512, 0, 64)),
        ("call", OWNER, "set_sync_limits", (262144, 2, 256, 512, 128, 64)),
        ("call", PUBLISHER, "append_sync_events", ([event("c", i, {}) for i in (1, 2, 3)],)),
        ("call", OWNER, "set_sync_retention", (2, 0, 1000)),
        ("call", OWNER, "set_sync_retention", (0, 0, 0)),
        ("call", PUBLISHER, "set_trusted_issuer", (CONTROL,)),
        ("call", OWNER, "set_trusted_issuer", ("x" * 513,)),
        ("call", OWNER, "set_trusted_issuer", (CONTROL,)),
        ("call", STRANGER, "append_sync_events", ([event("s", 5, {})],)),
        ("connect", STRANGER, "", ()),
        ("call", PUBLISHER, "append_sync_events", ([event("s", 5, {})],)),
        ("connect", TRUSTED, "", ()),
        ("call", TRUSTED, "append_sync_events", ([event("s", 5, {}), event("s", 6, {})],)),
        ("call", TRUSTED, "reset_stream", ("s",)),
        ("call", TRUSTED, "append_sync_events", ([event("s", 1, {"again": 1}, key="s:again")],)),
        ("disconnect", READER, "", ()),
    ]
    return steps


def _masked(value: Any) -> Any:
    if isinstance(value, Timestamp):
        return "<timestamp>"
    if isinstance(value, tuple | list):
        return type(value)(_masked(v) for v in value) if not hasattr(value, "_fields") else tuple(map(_masked, value))
    return value


async def _run(hosted: Any, data: Path) -> tuple[list[tuple[str, str]], dict[str, list[Any]]]:
    engine = HostEngine(hosted, data, "autopilot-sync", EngineConfig(fsync=False))
    await engine.start()
    answers: list[tuple[str, str]] = []
    try:
        for kind, who, reducer, args in script():
            if kind == "connect":
                try:
                    await engine.connect(who)
                    answers.append(("connected", ""))
                except ConnectionRejectedError as exc:
                    answers.append(("rejected", str(exc)))
            elif kind == "disconnect":
                await engine.disconnect(who)
                answers.append(("disconnected", ""))
            else:
                outcome = await engine.call_reducer(reducer, args, who)
                answers.append((outcome.status.value, outcome.message))
        tables = {
            name: sorted((_masked(tuple(row)) for row in table.rows.values()), key=repr)
            for name, table in engine.datastore.tables.items()
            if not name.startswith("st_")
        }
    finally:
        await engine.stop()
    return answers, tables


async def test_the_same_script_gives_the_same_answers_and_rows_on_both_modules(
    typescript_sync_module: Path, tmp_path: Path
) -> None:
    python_answers, python_tables = await _run(module, tmp_path / "python")
    twin: HostedModule = JsModule(typescript_sync_module, limits=RunnerLimits(heap_mb=128, call_timeout_s=30.0))
    try:
        twin_answers, twin_tables = await _run(twin, tmp_path / "typescript")
    finally:
        twin.close()  # type: ignore[attr-defined]
    steps = script()
    differ = [
        f"step {i} {steps[i][0]} {steps[i][2]}: python {p!r:.300} / twin {t!r:.300}"
        for i, (p, t) in enumerate(zip(python_answers, twin_answers, strict=True))
        if p != t
    ]
    assert not differ, "\n".join(differ)
    assert {status for status, _ in python_answers} >= {"committed", "user_error", "connected", "rejected"}
    assert python_tables.keys() == twin_tables.keys()
    for name in python_tables:
        assert python_tables[name] == twin_tables[name], name
