"""The chat module of SpacetimeDB's TypeScript quickstart, built here, describes itself in the module runner.

A module that is not ours: its own `__describe_module__` (the official library's RawModuleDef V10), read by the
same reader the host uses, must show the quickstart's tables, keys and reducers, lifecycle hooks included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autopilot_sync.jsmodule import JsModuleRunner, SyscallRefusedError
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import moduledef
from autopilot_sync.spacetime.moduledef import Lifecycle

pytestmark = pytest.mark.node


class RefusingSyscallsDouble:
    """Unit-test double for the engine: describing a module must need no datastore, so every syscall is refused."""

    def handle(self, fn: str, args: list[Any], body: bytes) -> tuple[Any, bytes]:
        raise SyscallRefusedError(1, f"describing needs no syscall, got {fn}")


def test_the_built_chat_module_describes_its_tables_and_reducers(built_chat: Path) -> None:
    with JsModuleRunner(built_chat, RefusingSyscallsDouble()) as runner:
        definition = moduledef.from_raw_module_def_bsatn(runner.describe())

    user, message = definition.table("user"), definition.table("message")
    assert user.public and message.public
    assert [e.name for e in definition.row_type(user).elements] == ["identity", "name", "online"]
    assert user.primary_key == (0,)
    assert [e.name for e in definition.row_type(message).elements] == ["sender", "sent", "text"]
    assert definition.reducer("set_name").params == at.product(("name", at.STRING))
    assert definition.reducer("send_message").params == at.product(("text", at.STRING))
    lifecycles = {r.lifecycle: r.name for r in definition.reducers if r.lifecycle is not None}
    assert lifecycles == {
        Lifecycle.INIT: "init",
        Lifecycle.ON_CONNECT: "on_connect",
        Lifecycle.ON_DISCONNECT: "on_disconnect",
    }
