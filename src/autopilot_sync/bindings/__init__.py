"""The module-authoring API: how a module declares its tables, reducers and lifecycle hooks.

Like SpacetimeDB's `bindings` crate, which never depends on `core`: a module imports this package and `spacetime/`,
never the host. The host reads a `Module` (its `module_def()`, in `spacetime/moduledef.py` terms) and hands each
reducer an object implementing the `ReducerContext` protocol (`host/transaction.py`). The pieces: `tables` (a
table's definition), `reducers` (reducer definitions, lifecycle hooks, the refusal a reducer raises), `context` (what
a reducer may use), `module` (the decorators that collect them, and the definition they describe).
"""

from autopilot_sync.bindings.context import ReducerContext, TableAccess, Tables
from autopilot_sync.bindings.module import Module
from autopilot_sync.bindings.reducers import Lifecycle, ReducerDef, ReducerError, ReducerFn, StartHook, StartInfo
from autopilot_sync.bindings.tables import Row, TableDef, row_class_name

__all__ = [
    "Lifecycle",
    "Module",
    "ReducerContext",
    "ReducerDef",
    "ReducerError",
    "ReducerFn",
    "Row",
    "StartHook",
    "StartInfo",
    "TableAccess",
    "TableDef",
    "Tables",
    "row_class_name",
]
