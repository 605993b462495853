"""The host's side of a module: its definition written as `RawModuleDefV9` JSON, and the schema's digest.

Modules declare themselves with `autopilot_sync.bindings`; this is what the host serves at
`/v1/database/:name/schema` and stores with the data (`schema_hash`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from autopilot_sync.bindings.module import Module
from autopilot_sync.bindings.tables import TableDef, row_class_name
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn


def schema_json(module: Module) -> dict[str, Any]:
    """The module as `RawModuleDefV9` in SATS-JSON, the form `GET /schema?version=9` serves."""
    types: list[dict[str, Any]] = []
    tables: list[dict[str, Any]] = []
    type_names: list[dict[str, Any]] = []
    for ref, table in enumerate(module.tables.values()):
        types.append(at.to_json(table.row_type))
        type_names.append(
            {"name": {"scope": [], "name": row_class_name(table.name)[:-3]}, "ty": ref, "custom_ordering": True}
        )
        tables.append(_table_json(table, ref))
    reducers = [
        {
            "name": r.name,
            "params": at.to_json(r.params)["Product"],
            "lifecycle": {"some": {r.lifecycle.value: []}} if r.lifecycle else {"none": []},
        }
        for r in module.reducers.values()
    ]
    return {
        "typespace": {"types": types},
        "tables": tables,
        "reducers": reducers,
        "types": type_names,
        "misc_exports": [
            _default_json(table, column, value) for table in module.tables.values() for column, value in table.defaults
        ],
        "row_level_security": [{"sql": sql} for sql in module.visibility_filters.values()],
    }


def module_schema_hash(module: Module) -> str:
    """A stable digest of the schema: stored with the data so a changed module cannot misread old rows."""
    canonical = json.dumps(schema_json(module), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _some(value: Any) -> dict[str, Any]:
    return {"some": value}


_NONE: Mapping[str, Any] = {"none": []}


def _default_json(table: TableDef, column: str, value: Any) -> dict[str, Any]:
    """`RawMiscModuleExportV9::ColumnDefaultValue`: the column's default as BSATN bytes (hex in SATS-JSON)."""
    position = table.column_index(column)
    data = bsatn.codec(table.columns[position][1]).encode(value)
    return {"ColumnDefaultValue": {"table": table.name, "col_id": position, "value": data.hex()}}


def _table_json(table: TableDef, ref: int) -> dict[str, Any]:
    def cols(group: Sequence[str]) -> list[int]:
        return [table.column_index(c) for c in group]

    indexes = [
        {
            "name": _some(f"{table.name}_{'_'.join(group)}_idx_btree"),
            "accessor_name": _some("_".join(group)),
            "algorithm": {"BTree": {"columns": cols(group)}},
        }
        for group in table.all_indexes()
    ]
    constraints = [
        {"name": _some(f"{table.name}_{'_'.join(group)}_key"), "data": {"Unique": {"columns": cols(group)}}}
        for group in table.unique_keys()
    ]
    sequences = [
        {
            "name": _some(f"{table.name}_{column}_seq"),
            "column": table.column_index(column),
            "start": dict(_NONE),
            "min_value": dict(_NONE),
            "max_value": dict(_NONE),
            "increment": 1,
        }
        for column in table.auto_inc
    ]
    schedule = (
        _some(
            {
                "name": _some(f"{table.name}_sched"),
                "reducer_name": table.scheduled_reducer,
                "scheduled_at_column": table.column_index("scheduled_at"),
            }
        )
        if table.scheduled_reducer
        else dict(_NONE)
    )
    return {
        "name": table.name,
        "product_type_ref": ref,
        "primary_key": cols((table.primary_key,)) if table.primary_key else [],
        "indexes": indexes,
        "constraints": constraints,
        "sequences": sequences,
        "schedule": schedule,
        "table_type": {"User": []},
        "table_access": {"Public": []} if table.public else {"Private": []},
    }
