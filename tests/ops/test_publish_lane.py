"""The publish lane against a host double: what it records, refuses, promotes and rolls back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autopilot_sync.bindings.module import Module
from autopilot_sync.ops.ledger import Action, Ledger
from autopilot_sync.ops.publish import Lane, LaneError, Release, SmokeStep, release_tag
from autopilot_sync.settings.ops import Environment, Target
from autopilot_sync.spacetime import algebraic as at


def make_module(version: str = "1", *, extra_table: bool = False, drop_reducer: bool = False) -> Module:
    module = Module("shop", version=version)
    module.table("item", [("id", at.U64), ("name", at.STRING)], primary_key="id")
    if extra_table:
        module.table("audit", [("id", at.U64)], primary_key="id")

    def noop(ctx: object, *args: object) -> None:
        return None

    module.reducer(name="heartbeat")(noop)
    if not drop_reducer:
        module.reducer(("id", at.U64), name="remove_item")(noop)
    return module


class HostDouble:
    """Serves whatever schema a test deploys; the smoke check passes unless told otherwise."""

    def __init__(self, module: Module) -> None:
        self.served: dict[str, Any] = module.schema_json()
        self.smoke_ok = True

    def deploy(self, module: Module) -> None:
        self.served = module.schema_json()

    async def schema(self) -> dict[str, Any]:
        return self.served

    async def smoke(self) -> tuple[SmokeStep, ...]:
        return (SmokeStep("heartbeat", self.smoke_ok, "double"),)


def lane(tmp_path: Path, env: Environment, host: HostDouble) -> Lane:
    target = Target(env, "http://h", "db", "http://c", tmp_path / "key", tmp_path / "ops")
    return Lane(target, host, revision="abc123")


def test_tags_are_deterministic_version_plus_schema_hash() -> None:
    first, again = Release.of(make_module()), Release.of(make_module())
    assert first.tag == again.tag == release_tag("1", first.schema_hash)
    assert first.tag.startswith("v1-") and len(first.tag) == 3 + 12
    assert Release.of(make_module(extra_table=True)).tag != first.tag


async def test_publish_of_the_served_schema_records_and_verifies(tmp_path: Path) -> None:
    host = HostDouble(make_module())
    dev = lane(tmp_path, Environment.DEV, host)
    release = Release.of(make_module())
    outcome = await dev.publish(release, allow_breaking=False, wait_seconds=0)
    assert outcome.status == 0, outcome.lines
    assert outcome.lines[-1] == f"GO: dev runs {release.tag}, verified"
    assert [e.action for e in dev.ledger.entries()] == [Action.PUBLISH, Action.VERIFY]
    assert dev.ledger.verified(release.tag) is not None
    assert dev.ledger.load_schema(release.tag) == release.schema
    again = await dev.publish(release, allow_breaking=False, wait_seconds=0)
    assert "already the verified release" in again.lines[-1]
    assert len(dev.ledger.entries()) == 2


async def test_a_compatible_addition_waits_for_the_restart(tmp_path: Path) -> None:
    host = HostDouble(make_module())
    dev = lane(tmp_path, Environment.DEV, host)
    release = Release.of(make_module(extra_table=True))
    outcome = await dev.publish(release, allow_breaking=False, wait_seconds=0)
    assert outcome.status == 0
    text = "\n".join(outcome.lines)
    assert "+ table audit: new table (id: U64) [compatible]" in text
    assert "DEPLOY: restart the dev host" in text and "PENDING" in text
    assert dev.ledger.current() is not None and dev.ledger.verified(release.tag) is None
    host.deploy(make_module(extra_table=True))
    verified = await dev.verify()
    assert verified.status == 0 and dev.ledger.verified(release.tag) is not None


async def test_breaking_changes_are_refused_without_the_flag(tmp_path: Path) -> None:
    dev = lane(tmp_path, Environment.DEV, HostDouble(make_module()))
    release = Release.of(make_module(drop_reducer=True))
    refused = await dev.publish(release, allow_breaking=False, wait_seconds=0)
    assert refused.status == 1 and refused.lines[-1].startswith("REFUSED: 1 breaking change(s)")
    assert "- reducer remove_item" in "\n".join(refused.lines)
    assert dev.ledger.entries() == []
    allowed = await dev.publish(release, allow_breaking=True, wait_seconds=0)
    assert allowed.status == 0 and dev.ledger.current() is not None


async def test_a_failed_smoke_is_no_go_and_recorded(tmp_path: Path) -> None:
    host = HostDouble(make_module())
    host.smoke_ok = False
    dev = lane(tmp_path, Environment.DEV, host)
    outcome = await dev.publish(Release.of(make_module()), allow_breaking=False, wait_seconds=0)
    assert outcome.status == 1 and outcome.lines[-1].startswith("NO-GO")
    assert dev.ledger.entries()[-1].detail["ok"] is False


async def test_promotion_needs_the_same_release_verified_upstream(tmp_path: Path) -> None:
    host = HostDouble(make_module())
    dev, staging = lane(tmp_path, Environment.DEV, host), lane(tmp_path, Environment.STAGING, host)
    release = Release.of(make_module())
    with pytest.raises(LaneError, match="dev has no recorded release"):
        await staging.promote(release, dev.ledger, allow_breaking=False, wait_seconds=0)
    host.smoke_ok = False
    await dev.publish(release, allow_breaking=False, wait_seconds=0)
    with pytest.raises(LaneError, match="not verified in dev"):
        await staging.promote(release, dev.ledger, allow_breaking=False, wait_seconds=0)
    host.smoke_ok = True
    await dev.verify()
    with pytest.raises(LaneError, match="this checkout is"):
        await staging.promote(Release.of(make_module("2")), dev.ledger, allow_breaking=False, wait_seconds=0)
    promoted = await staging.promote(release, dev.ledger, allow_breaking=False, wait_seconds=0)
    assert promoted.status == 0
    entry = staging.ledger.current()
    assert entry is not None and entry.action is Action.PROMOTE and entry.detail["from_env"] == "dev"


async def test_rollback_goes_to_the_previous_release_only_when_compatible(tmp_path: Path) -> None:
    host = HostDouble(make_module())
    prod = lane(tmp_path, Environment.PROD, host)
    v1, v2 = Release.of(make_module("1")), Release.of(make_module("2"))
    with pytest.raises(LaneError, match="no previous release"):
        await prod.rollback(allow_breaking=False, wait_seconds=0)
    await prod.publish(v1, allow_breaking=False, wait_seconds=0)
    host.deploy(make_module("2"))
    await prod.publish(v2, allow_breaking=False, wait_seconds=0)
    assert [e.tag for e in prod.ledger.releases()] == [v1.tag, v2.tag]
    back = await prod.rollback(allow_breaking=False, wait_seconds=0)
    assert back.status == 0, back.lines
    assert prod.ledger.current() is not None and prod.ledger.current().tag == v1.tag  # type: ignore[union-attr]
    assert "code at abc123" in "\n".join(back.lines)

    # a release that added a table cannot be rolled back without dropping it: breaking, refused
    v3 = Release.of(make_module("3", extra_table=True))
    await prod.publish(v3, allow_breaking=False, wait_seconds=0)
    host.deploy(make_module("3", extra_table=True))
    await prod.verify()
    refused = await prod.rollback(allow_breaking=False, wait_seconds=0)
    assert refused.status == 1 and "REFUSED" in refused.lines[-1]
    assert "- table audit" in "\n".join(refused.lines)


def test_ledger_rejects_a_torn_line(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    tmp_path.mkdir(exist_ok=True)
    ledger.path.write_text('{"action": "publish"', encoding="utf-8")
    with pytest.raises(Exception, match="not a ledger entry"):
        ledger.entries()
