"""Test module, never shipped: release 1's schema with a row-level-security filter that does not compile.

A publish of it must be refused before anything is recorded (the host checks every filter when it loads a module).
"""

from __future__ import annotations

from autopilot_sync.bindings.context import ReducerContext
from autopilot_sync.bindings.module import Module
from autopilot_sync.spacetime import algebraic as at

module = Module("notes", "1")
note = module.table("note", [("id", at.U64), ("text", at.STRING)], primary_key="id", auto_inc=("id",))
module.client_visibility_filter("note", "SELECT * FROM note WHERE author = :sender")


@module.reducer(("text", at.STRING))
def add_note(ctx: ReducerContext, text: str) -> None:
    """Store a note."""
    ctx.db["note"].insert(note.row_class(0, text))
