"""Test module, never shipped: release 3, breaking for 2's data (`note.text` becomes `lines: Array<String>`,
`tag` is gone): a publish is refused unless it deletes the data."""

from __future__ import annotations

from autopilot_sync.bindings.context import ReducerContext
from autopilot_sync.bindings.module import Module
from autopilot_sync.spacetime import algebraic as at

module = Module("notes", "3")
note = module.table("note", [("id", at.U64), ("lines", at.array(at.STRING))], primary_key="id", auto_inc=("id",))


@module.reducer(("lines", at.array(at.STRING)))
def add_note(ctx: ReducerContext, lines: list[str]) -> None:
    """Store a note of several lines."""
    ctx.db["note"].insert(note.row_class(0, lines))
