"""Test module, never shipped: release 2, compatible with 1 (SpacetimeDB's automatic migration accepts it).

A column added at the end of `note` with a default, a new table `tag`, a new index, a new reducer.
"""

from __future__ import annotations

from autopilot_sync.bindings.context import ReducerContext
from autopilot_sync.bindings.module import Module
from autopilot_sync.spacetime import algebraic as at

module = Module("notes", "2")
note = module.table(
    "note",
    [("id", at.U64), ("text", at.STRING), ("pinned", at.BOOL)],
    primary_key="id",
    auto_inc=("id",),
    indexes=[("text",)],
    defaults={"pinned": False},
)
tag = module.table("tag", [("note_id", at.U64), ("label", at.STRING)], indexes=[("note_id",)])


@module.reducer(("text", at.STRING))
def add_note(ctx: ReducerContext, text: str) -> None:
    """Store a note (not pinned)."""
    ctx.db["note"].insert(note.row_class(0, text, False))


@module.reducer(("text", at.STRING))
def add_pinned_note(ctx: ReducerContext, text: str) -> None:
    """Store a pinned note."""
    ctx.db["note"].insert(note.row_class(0, text, True))


@module.reducer(("note_id", at.U64), ("label", at.STRING))
def add_tag(ctx: ReducerContext, note_id: int, label: str) -> None:
    """Tag a note."""
    ctx.db["tag"].insert(tag.row_class(note_id, label))
