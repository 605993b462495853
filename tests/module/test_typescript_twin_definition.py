"""The TypeScript twin describes itself exactly as the Python sync module does (issue 18 item 2).

The twin is built from `modules/autopilot-sync` with the project's toolchain, loaded in the real module runner (a
Node child), and its own `__describe_module__` (BSATN `RawModuleDef` V10, written by the official library) is read
with `spacetime.moduledef`. Equal tables, columns and types (named types resolved), keys, indexes, constraints,
defaults, reducers and parameters, and row-level security mean every row and argument has the same BSATN, so the
generated `sync_bindings` — hence the runtime and the desktop — work against either module unchanged.

Two differences are the library's, not the twin's, and are normalised here: a primary key's unique constraint, an
auto-increment sequence and a schedule have no name in the library's description (the host names them
`<table>_<columns>_key`, `<table>_<column>_seq` and `<table>_sched`, as the Python module does), and
the library marks lifecycle and scheduled reducers client-callable (a host never lets a client call a lifecycle
reducer; `apply_retention` only ever applies the owner's recorded policy, so a client calling it can at most make
it run sooner, as module/retention.py says of SpacetimeDB).
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from autopilot_sync.contract.codes import SyncErrorCode
from autopilot_sync.host.js_module import JsModule
from autopilot_sync.module import module
from autopilot_sync.spacetime.moduledef import from_raw_module_def_bsatn
from autopilot_sync.spacetime.moduledef.model import ModuleDef, TableDef, resolve_deep
from typescript_twin import TWIN_DIR

pytestmark = pytest.mark.node


@pytest.fixture(scope="module")
def twin(typescript_sync_module: Path) -> ModuleDef:
    """The twin's own description, as the runner gets it from the built file."""
    hosted = JsModule(typescript_sync_module)
    try:
        return from_raw_module_def_bsatn(hosted.runner.describe())
    finally:
        hosted.close()


@pytest.fixture(scope="module")
def python() -> ModuleDef:
    return module.module_def()


def _named(definition: ModuleDef, table: TableDef) -> TableDef:
    """The table with the names a host gives what the library leaves unnamed (as SpacetimeDB and our host do)."""
    columns = definition.row_type(table).elements
    constraints = tuple(
        c if c.name else replace(c, name=f"{table.name}_{'_'.join(columns[i].name or '' for i in c.columns)}_key")
        for c in table.constraints
    )
    sequences = tuple(
        s if s.name else replace(s, name=f"{table.name}_{columns[s.column].name}_seq") for s in table.sequences
    )
    schedule = table.schedule
    if schedule is not None and not schedule.name:
        schedule = replace(schedule, name=f"{table.name}_sched")
    return replace(table, constraints=constraints, sequences=sequences, schedule=schedule, product_type_ref=0)


def test_the_twin_has_the_same_tables_columns_types_keys_indexes_and_defaults(
    twin: ModuleDef, python: ModuleDef
) -> None:
    assert [t.name for t in twin.tables] == [t.name for t in python.tables]
    for mine, theirs in zip(python.tables, twin.tables, strict=True):
        assert resolve_deep(twin.row_type(theirs), twin.typespace) == resolve_deep(
            python.row_type(mine), python.typespace
        ), mine.name
        assert _named(twin, theirs) == _named(python, mine)


def test_the_twin_has_the_same_reducers_parameters_and_lifecycle(twin: ModuleDef, python: ModuleDef) -> None:
    assert sorted(r.name for r in twin.reducers) == sorted(r.name for r in python.reducers)
    scheduled = {t.schedule.reducer for t in python.tables if t.schedule is not None}
    assert scheduled == {t.schedule.reducer for t in twin.tables if t.schedule is not None} == {"apply_retention"}
    for mine in python.reducers:
        theirs = twin.reducer(mine.name)
        assert resolve_deep(theirs.params, twin.typespace) == resolve_deep(mine.params, python.typespace), mine.name
        assert theirs.lifecycle == mine.lifecycle, mine.name
        if mine.lifecycle is None and mine.name not in scheduled:
            assert theirs.client_callable == mine.client_callable, mine.name


def test_the_twin_declares_the_same_row_level_security(twin: ModuleDef, python: ModuleDef) -> None:
    assert sorted(twin.row_level_security) == sorted(python.row_level_security)


def test_the_build_is_one_module_file_that_keeps_its_host_imports(typescript_sync_module: Path) -> None:
    text = typescript_sync_module.read_text()
    assert 'from "spacetime:sys@2.0"' in text and 'from "spacetime:sys@2.1"' in text
    assert "\nusing " not in text  # lowered for Node 20 by the es2022 target


def test_the_twin_knows_exactly_the_contracts_error_codes() -> None:
    """`errors.ts` lists the same closed set of codes as `contract/codes.py` (docs/protocol.md), no more, no less."""
    text = (TWIN_DIR / "src" / "errors.ts").read_text()
    table = text[text.index("export const Code = {") : text.index("} as const;")]
    twin_codes = dict(re.findall(r"^\s+([A-Z_]+): '([a-z_]+)',$", table, re.M))
    assert twin_codes == {code.name: code.value for code in SyncErrorCode}
