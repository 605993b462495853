"""Run a SpacetimeDB TypeScript module in a Node child process, contained (issue 18, ADR 0003).

`JsModuleRunner` owns the child and its frame protocol; it knows nothing of the engine (this package is floor 2).
The host's side, `host.js_module.JsModule` with `host.js_syscalls.EngineSyscalls`, answers the syscalls from the
engine's transaction.
"""

from autopilot_sync.jsmodule.errors import (
    JsCallTimeoutError,
    JsHeapLimitError,
    JsModuleError,
    JsModuleLoadError,
    JsProtocolError,
    JsReducerPanicError,
    JsReplayNeededError,
    JsRunnerCrashedError,
    JsSenderError,
    SyscallRefusedError,
)
from autopilot_sync.jsmodule.runner import JsModuleRunner, SyscallHandler

__all__ = [
    "JsCallTimeoutError",
    "JsHeapLimitError",
    "JsModuleError",
    "JsModuleLoadError",
    "JsModuleRunner",
    "JsProtocolError",
    "JsReducerPanicError",
    "JsReplayNeededError",
    "JsRunnerCrashedError",
    "JsSenderError",
    "SyscallHandler",
    "SyscallRefusedError",
]
