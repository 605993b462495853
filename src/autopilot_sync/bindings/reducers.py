"""Reducer declarations: typed parameters, lifecycle hooks, the start hook, and the refusal a reducer raises."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autopilot_sync.spacetime.algebraic import ProductType

ReducerFn = Callable[..., Any]


class Lifecycle(enum.Enum):
    """Lifecycle hooks; the value is the `RawModuleDefV9` variant name."""

    INIT = "Init"
    CLIENT_CONNECTED = "OnConnect"
    CLIENT_DISCONNECTED = "OnDisconnect"


class ReducerError(Exception):
    """Raised by a reducer to fail its call with a user-facing message; the transaction rolls back.

    The message reaches the caller as `ReducerOutcome::Err` (WebSocket) or the 530 body (HTTP). The sync module puts a
    machine-readable code first (`sequence_conflict: ...`) so clients can classify errors without parsing prose.
    """


@dataclass(frozen=True, slots=True)
class StartInfo:
    """What the host tells a module's start hook about the start it just made."""

    fresh: bool
    """The database was just created (`init` ran in this start)."""
    history_discarded: bool
    """Recovery set aside a damaged commit-log tail: commits the host may have acknowledged are gone, so anything
    clients derived from them may no longer be the host's history."""


#: A module's start hook: gets a reducer context (as the database owner) and what the start found.
StartHook = Callable[[Any, StartInfo], None]


@dataclass(frozen=True, slots=True)
class ReducerDef:
    """A reducer: its typed parameters and the function the host calls inside a transaction."""

    name: str
    params: ProductType
    function: ReducerFn
    lifecycle: Lifecycle | None = None
