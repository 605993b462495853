"""The TypeScript twin describes itself exactly as the Python sync module does (issue 18 item 2).

The twin is built from `modules/autopilot-sync` with the project's toolchain, loaded in the real module runner (a
Node child), and its own `__describe_module__` (BSATN `RawModuleDef` V10, written by the official library) is read
with `spacetime.moduledef`. Equal tables, columns and types (named types resolved), keys, indexes, constraints,
defaults, reducers and parameters, and row-level security mean every row and argument has the same BSATN, so the
generated `sync_bindings` — hence the runtime and the desktop — work against either module unchanged.

Two differences are the library's, not the twin's, and are normalised here: a primary key's unique constraint has
no name in the library's description (the host names it `<table>_<columns>_key`, as the Python module does), and
the library marks lifecycle reducers client-callable (a host never lets a client call them).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from autopilot_sync.jsmodule import JsModuleRunner, SpikeTableDouble
from autopilot_sync.module import module
from autopilot_sync.spacetime.moduledef import from_raw_module_def_bsatn
from autopilot_sync.spacetime.moduledef.model import ModuleDef, TableDef, resolve_deep

pytestmark = pytest.mark.node


@pytest.fixture(scope="module")
def twin(typescript_sync_module: Path) -> ModuleDef:
    """The twin's own description, as the runner gets it from the built file."""
    with JsModuleRunner(typescript_sync_module, SpikeTableDouble([])) as runner:
        return from_raw_module_def_bsatn(runner.describe())


@pytest.fixture(scope="module")
def python() -> ModuleDef:
    return module.module_def()


def _named_constraints(definition: ModuleDef, table: TableDef) -> TableDef:
    columns = definition.row_type(table).elements
    named = tuple(
        c if c.name else replace(c, name=f"{table.name}_{'_'.join(columns[i].name or '' for i in c.columns)}_key")
        for c in table.constraints
    )
    return replace(table, constraints=named, product_type_ref=0)


def test_the_twin_has_the_same_tables_columns_types_keys_indexes_and_defaults(
    twin: ModuleDef, python: ModuleDef
) -> None:
    assert [t.name for t in twin.tables] == [t.name for t in python.tables]
    for mine, theirs in zip(python.tables, twin.tables, strict=True):
        assert resolve_deep(twin.row_type(theirs), twin.typespace) == resolve_deep(
            python.row_type(mine), python.typespace
        ), mine.name
        assert _named_constraints(twin, theirs) == _named_constraints(python, mine)


def test_the_twin_has_the_same_reducers_parameters_and_lifecycle(twin: ModuleDef, python: ModuleDef) -> None:
    assert sorted(r.name for r in twin.reducers) == sorted(r.name for r in python.reducers)
    for mine in python.reducers:
        theirs = twin.reducer(mine.name)
        assert resolve_deep(theirs.params, twin.typespace) == resolve_deep(mine.params, python.typespace), mine.name
        assert theirs.lifecycle == mine.lifecycle, mine.name
        if mine.lifecycle is None:
            assert theirs.client_callable == mine.client_callable, mine.name


def test_the_twin_declares_the_same_row_level_security(twin: ModuleDef, python: ModuleDef) -> None:
    assert sorted(twin.row_level_security) == sorted(python.row_level_security)


def test_the_build_is_one_module_file_that_keeps_its_host_imports(typescript_sync_module: Path) -> None:
    text = typescript_sync_module.read_text()
    assert 'from "spacetime:sys@2.0"' in text and 'from "spacetime:sys@2.1"' in text
    assert "\nusing " not in text  # lowered for Node 20 by the es2022 target
