"""Test module, never shipped: the sync module plus one table, `release_note` (a compatible change), for the
publish lane's tests (publish, promote, and a rollback the migration rules refuse)."""

from __future__ import annotations

from autopilot_sync.bindings.module import Module
from autopilot_sync.module import module as base
from autopilot_sync.spacetime import algebraic as at

module = Module(base.name, f"{base.version}.1")
module.tables.update(base.tables)
module.reducers.update(base.reducers)
module.visibility_filters.update(base.visibility_filters)
module.start_hook = base.start_hook
module.table("release_note", [("id", at.U64), ("text", at.STRING)], primary_key="id")
