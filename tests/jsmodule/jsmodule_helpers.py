"""Helpers for the module-runner tests: the notes module's reducer ids and its BSATN rows."""

from __future__ import annotations

import struct

from autopilot_sync.spacetime import moduledef


def reducer_ids(description: bytes) -> dict[str, int]:
    """Reducer ids as the library numbers them: each reducer's index in the module's own description."""
    definition = moduledef.from_raw_module_def_bsatn(description)
    return {reducer.name: i for i, reducer in enumerate(definition.reducers)}


def bsatn_note(note_id: int, text: str) -> bytes:
    """BSATN of the `add_note` arguments / a `note` row: u32 id, then a length-prefixed UTF-8 string."""
    raw = text.encode()
    return struct.pack("<II", note_id, len(raw)) + raw
