"""Test module, never shipped: `pub_sync_v2` plus an index on `release_note.text` (compatible; and going back to
v2, which drops the index, is compatible too: a rollback the lane accepts)."""

from __future__ import annotations

from autopilot_sync.bindings.module import Module
from autopilot_sync.module import module as base
from autopilot_sync.spacetime import algebraic as at

module = Module(base.name, f"{base.version}.2")
module.tables.update(base.tables)
module.reducers.update(base.reducers)
module.visibility_filters.update(base.visibility_filters)
module.start_hook = base.start_hook
module.table("release_note", [("id", at.U64), ("text", at.STRING)], primary_key="id", indexes=[("text",)])
