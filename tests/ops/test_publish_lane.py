"""The publish lane's pure parts: release tags and the ledger (the lane itself runs against real hosts:
tests/ops/test_publish_live.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopilot_sync.bindings.module import Module
from autopilot_sync.ops.ledger import Ledger
from autopilot_sync.ops.publish import Release, release_tag
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


def test_tags_are_deterministic_version_plus_schema_hash() -> None:
    first, again = Release.of(make_module()), Release.of(make_module())
    assert first.tag == again.tag == release_tag("1", first.schema_hash)
    assert first.tag.startswith("v1-") and len(first.tag) == 3 + 12
    assert Release.of(make_module(extra_table=True)).tag != first.tag


def test_ledger_rejects_a_torn_line(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    tmp_path.mkdir(exist_ok=True)
    ledger.path.write_text('{"action": "publish"', encoding="utf-8")
    with pytest.raises(Exception, match="not a ledger entry"):
        ledger.entries()
