"""Helpers for the TypeScript-module runner spike tests: the notes module's reducers and its BSATN rows."""

from __future__ import annotations

import struct

REDUCERS = ("add_note", "count_notes", "empty", "refuse", "explode", "spin", "hog", "sleep_a_while")


def reducer_ids(description: bytes) -> dict[str, int]:
    """Reducer ids in description order, found by their BSATN-encoded names.

    A spike shortcut: the full ABI decodes RawModuleDefV10 properly. Each reducer name here occurs once.
    """
    positions = {}
    for name in REDUCERS:
        encoded = struct.pack("<I", len(name)) + name.encode()
        assert description.count(encoded) == 1, name
        positions[name] = description.index(encoded)
    return {name: i for i, name in enumerate(sorted(positions, key=positions.__getitem__))}


def bsatn_note(note_id: int, text: str) -> bytes:
    """BSATN of the `add_note` arguments / a `note` row: u32 id, then a length-prefixed UTF-8 string."""
    raw = text.encode()
    return struct.pack("<II", note_id, len(raw)) + raw
