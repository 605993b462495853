"""The module definition: one typed, version-neutral model, read from and written as `RawModuleDef` V9 and V10.

- `model.py`: the frozen definition (`ModuleDef`, `TableDef`, `ReducerDef`, ...) and the one typespace resolver;
- `raw.py`: the SATS types of the two raw forms, so one codec writes and reads JSON and BSATN;
- `v9.py`, `v10.py`: each version's mapping to and from the model; `schema_hash` (over V9, stable);
- `validate.py`: what every reader checks; `diff.py`: what changed between two definitions, and whether it breaks
  (imported as `moduledef.diff`, not re-exported here: a host's start never compares definitions, so it does not
  pay for building the diff's classes).

Pure: imports only `spacetime/`. The host writes its modules through it, the SDK and the code generator read
through it, the host's upgrade check and the publish lane compare with it.
"""

from __future__ import annotations

from typing import Any

from autopilot_sync.spacetime.moduledef import raw, v9, v10
from autopilot_sync.spacetime.moduledef.model import (
    ColumnDefault,
    IndexDef,
    IndexKind,
    Lifecycle,
    ModuleDef,
    ModuleDefError,
    ProcedureDef,
    ReducerDef,
    ScheduleDef,
    SequenceDef,
    TableDef,
    TypeDef,
    UniqueConstraintDef,
    ViewDef,
    resolve,
    resolve_deep,
)
from autopilot_sync.spacetime.moduledef.v9 import schema_hash

#: The `version` values of `GET /v1/database/:name/schema` (SpacetimeDB's `SchemaVersion` in `routes/database.rs`).
SCHEMA_VERSIONS = (9, 10)


def to_json(definition: ModuleDef, version: int) -> dict[str, Any]:
    """The definition as `RawModuleDefV9` or `RawModuleDefV10` SATS-JSON."""
    if version == 9:
        return v9.to_json(definition)
    if version == 10:
        return v10.to_json(definition)
    raise ValueError(f"no RawModuleDef version {version} (have {SCHEMA_VERSIONS})")


def from_json(document: Any) -> ModuleDef:
    """Read a schema document of either version: V10 is an object of `sections`, V9 one with a `typespace`."""
    if isinstance(document, dict) and "sections" in document:
        return v10.from_json(document)
    return v9.from_json(document)


def from_raw_module_def_bsatn(data: bytes) -> ModuleDef:
    """Read the BSATN `RawModuleDef` enum a module's `__describe_module__` returns (V9 or V10; V8 is refused)."""
    if not data:
        raise ModuleDefError("empty RawModuleDef")
    if data[0] == raw.RAW_MODULE_DEF_V9_TAG:
        return v9.from_bsatn(bytes(data[1:]))
    if data[0] == raw.RAW_MODULE_DEF_V10_TAG:
        return v10.from_bsatn(bytes(data[1:]))
    raise ModuleDefError(f"RawModuleDef variant {data[0]} is not V9 (1) or V10 (2)")


def to_raw_module_def_bsatn(definition: ModuleDef) -> bytes:
    """The definition as the BSATN `RawModuleDef::V10` a module describes itself with."""
    return bytes([raw.RAW_MODULE_DEF_V10_TAG]) + v10.to_bsatn(definition)


__all__ = [
    "SCHEMA_VERSIONS",
    "ColumnDefault",
    "IndexDef",
    "IndexKind",
    "Lifecycle",
    "ModuleDef",
    "ModuleDefError",
    "ProcedureDef",
    "ReducerDef",
    "ScheduleDef",
    "SequenceDef",
    "TableDef",
    "TypeDef",
    "UniqueConstraintDef",
    "ViewDef",
    "from_json",
    "from_raw_module_def_bsatn",
    "resolve",
    "resolve_deep",
    "schema_hash",
    "to_json",
    "to_raw_module_def_bsatn",
    "v9",
    "v10",
]
