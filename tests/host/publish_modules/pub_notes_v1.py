"""Test module, never shipped: release 1 of a small notes database (one table, one reducer)."""

from __future__ import annotations

from autopilot_sync.bindings.context import ReducerContext
from autopilot_sync.bindings.module import Module
from autopilot_sync.spacetime import algebraic as at

module = Module("notes", "1")
note = module.table("note", [("id", at.U64), ("text", at.STRING)], primary_key="id", auto_inc=("id",))


@module.reducer(("text", at.STRING))
def add_note(ctx: ReducerContext, text: str) -> None:
    """Store a note."""
    ctx.db["note"].insert(note.row_class(0, text))
