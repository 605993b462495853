"""Procedures: a module function called outside any transaction that returns a value and may open transactions.

SpacetimeDB's procedures (`spacetimedb.procedure(...)` in the TypeScript library) run without a transaction; each
`ctx.withTx(body)` opens one (`procedure_start_mut_tx`), and commits it (`procedure_commit_mut_tx`) or rolls it back
(`procedure_abort_mut_tx`). Here each such transaction commits through the engine exactly as a reducer's does: one
commit-log record, the same durability rule (no answer reveals it before it is on disk), the same fan-out to
subscribers. This module holds what the engine, the module seam and the answering layers share: the outcome of a
call, and the transaction hooks a module's procedure uses.

Only TypeScript modules have procedures (`JsModule.call_procedure`); a Python module declares none.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from autopilot_sync.host.caller import Caller
from autopilot_sync.host.transaction import HostReducerContext
from autopilot_sync.spacetime.values import Timestamp


class ProcedureCallError(Exception):
    """The procedure failed (refused arguments, a throw, a limit, a crash): its text goes to the caller."""


class ProcedureArgumentsError(ProcedureCallError):
    """The arguments do not decode against the procedure's parameters: refused before the module runs."""


class ProcedureTxError(Exception):
    """A transaction a procedure opened could not be committed (storage failed); the module sees a host error."""


class ProcedureStatus(enum.Enum):
    """How a procedure call ended (the HTTP route maps each to a status code; v2 has Returned or InternalError)."""

    RETURNED = "returned"
    FAILED = "failed"
    NO_SUCH_PROCEDURE = "no_such_procedure"
    BAD_ARGUMENTS = "bad_arguments"


#: SpacetimeDB's text for an unknown procedure (`ProcedureCallError::NoSuchProcedure`).
NO_SUCH_PROCEDURE = "No such procedure"


@dataclass(frozen=True, slots=True)
class ProcedureOutcome:
    """How one procedure call ended: its BSATN return value, or the error text (never both).

    `offset` is the newest engine offset the call could have seen or written; the answer waits until it is durable.
    """

    timestamp: Timestamp
    status: ProcedureStatus = ProcedureStatus.FAILED
    returned: bytes | None = None
    error: str = ""
    duration_micros: int = 0
    offset: int = 0


class ProcedureTransactions(Protocol):
    """The engine's hooks for the transactions a procedure opens, one at a time."""

    def begin(self) -> HostReducerContext:
        """A new transaction for the procedure's caller (its timestamp is the transaction's)."""
        ...

    def commit(self, ctx: HostReducerContext) -> None:
        """Commit through the engine's log; raises `ProcedureTxError` when it cannot."""
        ...

    def abort(self, ctx: HostReducerContext) -> None:
        """Roll the transaction back."""
        ...


class ProcedureModule(Protocol):
    """A module that runs procedures (the optional part of the module seam)."""

    def call_procedure(
        self, procedure: str, args: bytes, caller: Caller, timestamp: Timestamp, txs: ProcedureTransactions
    ) -> bytes:
        """Run `procedure` with BSATN `args`; its BSATN return value, or `ProcedureCallError`."""
        ...
