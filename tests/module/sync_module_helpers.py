"""Shared helpers for the sync module tests: a started engine running the real module, and callers with claims."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from autopilot_sync.bindings.module import Module
from autopilot_sync.contract.canonical import hash_value
from autopilot_sync.devtools.stack import MODULE
from autopilot_sync.devtools.trust import name_trusted_issuer
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.host.hosted_module import HostedModule
from autopilot_sync.host.js_module import JsModule
from autopilot_sync.jsmodule.runner import RunnerLimits
from autopilot_sync.module import module
from autopilot_sync.nostr.keys import SecretKey
from autopilot_sync.spacetime.values import ConnectionId, Identity, Timestamp
from autopilot_sync.sync_bindings import AppendSyncEventsBatchItem

#: The issuer every test caller's token carries, and the one the `engine` fixture's owner names as trusted.
TEST_ISSUER = "https://control.test"

PUBLISHER_KEY = SecretKey.generate().public_key().hex
READER_KEY = SecretKey.generate().public_key().hex


def caller(scopes: list[str], *, sub: str = PUBLISHER_KEY, ident: int = 1, conn: int = 1, **extra: Any) -> Caller:
    """A caller whose verified claims grant `scopes`, from `TEST_ISSUER` unless `iss` says otherwise."""
    return Caller(Identity(ident), ConnectionId(conn), {"iss": TEST_ISSUER, "sub": sub, "scopes": scopes, **extra})


PUBLISHER = caller(["sync.append", "sync.subscribe"])
ADMIN = caller(["sync.admin", "sync.subscribe"], ident=9, conn=9)
READER = caller(["sync.subscribe", "sync.checkpoint.write"], sub=READER_KEY, ident=2, conn=2)


def event(
    stream: str, seq: int, body: Any, *, key: str | None = None, kind: str = "test.event"
) -> AppendSyncEventsBatchItem:
    """An `append_sync_events` input with a correct hash."""
    text, digest = hash_value(body)
    return AppendSyncEventsBatchItem(
        stream_id=stream,
        idempotency_key=key or f"{stream}:{seq}",
        kind=kind,
        payload=text,
        payload_hash=digest,
        expected_seq=seq,
        published_at=Timestamp(1_700_000_000_000_000),
    )


@pytest.fixture(params=["python", "typescript"])
def sync_module(request: pytest.FixtureRequest) -> Iterator[Module | HostedModule]:
    """The sync module under test: the Python module, or its TypeScript twin built and run in a Node child.

    Every test that takes `engine` runs against both, so the contract is proven for each (issue 18 item 3).
    """
    if request.param == "python":
        yield module
        return
    path = request.getfixturevalue("typescript_sync_module")
    twin = JsModule(path, limits=RunnerLimits(heap_mb=128, call_timeout_s=30.0))
    try:
        yield twin
    finally:
        twin.close()


@pytest.fixture(params=["python", "typescript"])
def served_module(request: pytest.FixtureRequest) -> str:
    """What a real host process serves (`LocalStack.module`): the Python module's path, or the built twin's file."""
    if request.param == "python":
        return MODULE
    path: Path = request.getfixturevalue("typescript_sync_module")
    return str(path)


@pytest.fixture
async def unconfigured_engine(sync_module: Module | HostedModule, tmp_path: Path) -> AsyncIterator[HostEngine]:
    """A fresh database whose owner has named no trusted issuer yet: every claim-bearing call is refused."""
    running = HostEngine(sync_module, tmp_path, "autopilot-sync", EngineConfig(fsync=False))
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def engine(unconfigured_engine: HostEngine) -> HostEngine:
    """A fresh database whose owner named `TEST_ISSUER`, as every deployment does right after publishing."""
    await name_trusted_issuer(unconfigured_engine, TEST_ISSUER)
    return unconfigured_engine
