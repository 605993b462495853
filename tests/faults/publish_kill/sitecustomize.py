"""Test fault, never shipped: SIGKILL the host at one named step of a publish (`$FAULT_PUBLISH_KILL`).

`FAULT_PUBLISH_KILL=<step>:<before|after>` with step one of `ModulePublisher`'s `_stage`, `_commit`, `_install` or
the engine's `after_install`. A test puts this directory on the host child's `PYTHONPATH`; Python imports
`sitecustomize` first, and this one wraps the step when `autopilot_sync.host.publish` is imported, so the host runs
its own unchanged code until the kill.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import signal
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

_POINT = os.environ.get("FAULT_PUBLISH_KILL", "")
_TARGET = "autopilot_sync.host.publish"


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _wrap(function: Callable[..., Any], when: str) -> Callable[..., Any]:
    if function.__code__.co_flags & 0x80:  # a coroutine function

        async def killing_async(*args: Any, **kwargs: Any) -> Any:
            if when == "before":
                _die()
            result = await function(*args, **kwargs)
            _die()
            return result

        return killing_async

    def killing(*args: Any, **kwargs: Any) -> Any:
        if when == "before":
            _die()
        result = function(*args, **kwargs)
        _die()
        return result

    return killing


def _patch(module: ModuleType) -> None:
    step, _, when = _POINT.partition(":")
    owner: Any = module.HostEngine if step == "after_install" else module.ModulePublisher
    setattr(owner, step, _wrap(getattr(owner, step), when))


class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            original(module)
            _patch(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if _POINT:
    sys.meta_path.insert(0, _Hook())
