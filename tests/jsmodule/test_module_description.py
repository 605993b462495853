"""The official library's own description of a TypeScript module reads through `spacetime.moduledef`.

A module built on `spacetimedb/server` describes itself with `__describe_module__()`: BSATN of `RawModuleDef::V10`
written by the library's generated types, with every section it knows (empty ones included, and a
`CaseConversionPolicy`). Reading it into the same `ModuleDef` the host serves is what lets a TypeScript module be
served, diffed and code-generated like a Python one.
"""

from __future__ import annotations

import pytest

from autopilot_sync.jsmodule import JsModuleRunner
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import moduledef

pytestmark = pytest.mark.node


def test_the_librarys_v10_description_reads_as_a_module_definition(runner: JsModuleRunner) -> None:
    description = runner.describe()
    definition = moduledef.from_raw_module_def_bsatn(description)

    (note,) = definition.tables
    assert note.name == "note" and note.public
    assert definition.row_type(note) == at.product(("id", at.U32), ("text", at.STRING))
    add_note = definition.reducer("add_note")
    assert add_note.params == at.product(("id", at.U32), ("text", at.STRING))
    assert add_note.client_callable and add_note.lifecycle is None
    assert {r.name for r in definition.reducers} >= {"add_note", "count_notes", "refuse", "spin"}

    # And it survives our own writers: V10 and V9 JSON, and our V10 bytes, give the same definition back.
    assert moduledef.from_json(moduledef.to_json(definition, 10)) == definition
    assert moduledef.from_raw_module_def_bsatn(moduledef.to_raw_module_def_bsatn(definition)) == definition
    assert moduledef.from_json(moduledef.to_json(definition, 9)).tables == definition.tables
