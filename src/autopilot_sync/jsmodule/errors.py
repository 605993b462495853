"""Typed failures of a JavaScript module call: every way a module can fail maps to one of these, never to a crash."""

from __future__ import annotations


class JsModuleError(Exception):
    """Base of every failure the module runner reports; the host keeps serving after any of them."""


class JsModuleLoadError(JsModuleError):
    """The module file could not be imported or does not expose module hooks."""


class JsReducerError(JsModuleError):
    """The reducer threw; the transaction it ran in must be rolled back by the caller."""


class JsSenderError(JsReducerError):
    """The reducer refused the caller with the library's `SenderError` (an answer, not a bug)."""


class JsReducerPanicError(JsReducerError):
    """The reducer threw anything else (a bug in the module); the runner itself is unharmed."""


class JsCallTimeoutError(JsModuleError):
    """The call exceeded its time limit; the runner was killed and will be restarted for the next call."""


class JsRunnerCrashedError(JsModuleError):
    """The runner process died during a call (killed, or aborted); it will be restarted for the next call."""

    def __init__(self, message: str, *, returncode: int | None, stderr_tail: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr_tail = stderr_tail


class JsHeapLimitError(JsRunnerCrashedError):
    """The module ran out of its heap limit; V8 aborted the runner, not the host."""


class JsReplayNeededError(JsModuleError):
    """A one-way insert of the call failed: the call's outcome is void and it must be run again with every insert
    answered (the module then sees the error where it inserted). Raised only for calls given one-way tables."""


class JsProtocolError(JsModuleError):
    """The runner sent a frame the host does not understand (a runner bug, never module input)."""


class SyscallRefusedError(Exception):
    """Raised by a syscall handler to refuse a syscall; the module sees the library's errno error class."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
