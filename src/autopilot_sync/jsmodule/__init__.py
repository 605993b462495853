"""Spike (issue 18): run a SpacetimeDB TypeScript module in a Node child process, contained.

Not wired into the engine. `JsModuleRunner` proves where the JavaScript runs and what a crossing costs; see
docs/adr/0003-typescript-modules-run-in-a-node-child.md for the decision and the plan for the full ABI.
"""

from autopilot_sync.jsmodule.errors import (
    JsCallTimeoutError,
    JsHeapLimitError,
    JsModuleError,
    JsModuleLoadError,
    JsProtocolError,
    JsReducerPanicError,
    JsRunnerCrashedError,
    JsSenderError,
    SyscallRefusedError,
)
from autopilot_sync.jsmodule.runner import JsModuleRunner, SyscallHandler
from autopilot_sync.jsmodule.spike_double import SpikeTableDouble

__all__ = [
    "JsCallTimeoutError",
    "JsHeapLimitError",
    "JsModuleError",
    "JsModuleLoadError",
    "JsModuleRunner",
    "JsProtocolError",
    "JsReducerPanicError",
    "JsRunnerCrashedError",
    "JsSenderError",
    "SpikeTableDouble",
    "SyscallHandler",
    "SyscallRefusedError",
]
