"""Typed answers to reducer calls and one-off queries, so callers switch on a type instead of parsing text.

A reducer call ends in exactly one of: committed (with the changes the transaction made to this client's cache), a
user error (the reducer refused; for the sync module the message starts with a machine-readable code, parsed into
`SyncErrorCode`), or an internal error (panic, unknown reducer, bad arguments, host failure).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autopilot_sync.client.cache import RowChange
from autopilot_sync.contract.codes import SyncErrorCode, parse_error_code
from autopilot_sync.spacetime.values import Timestamp


@dataclass(frozen=True, slots=True)
class ReducerCommitted:
    """The transaction committed; `changes` is what it did to this client's cache (empty when nothing subscribed)."""

    reducer: str
    timestamp: Timestamp
    changes: tuple[RowChange, ...]
    return_value: bytes = b""

    @property
    def ok(self) -> bool:
        """Always True: lets callers write `if result.ok`."""
        return True


@dataclass(frozen=True, slots=True)
class ReducerFailed:
    """The reducer returned an error and the transaction rolled back."""

    reducer: str
    timestamp: Timestamp
    message: str

    @property
    def ok(self) -> bool:
        """Always False."""
        return False

    @property
    def code(self) -> SyncErrorCode | None:
        """The sync module's error code at the start of the message, when it is one."""
        return parse_error_code(self.message)


@dataclass(frozen=True, slots=True)
class ReducerInternalError:
    """The host could not run the reducer: a panic, an unknown reducer, undecodable arguments, a storage failure."""

    reducer: str
    timestamp: Timestamp
    message: str

    @property
    def ok(self) -> bool:
        """Always False."""
        return False


ReducerCallResult = ReducerCommitted | ReducerFailed | ReducerInternalError


@dataclass(frozen=True, slots=True)
class ProcedureReturned:
    """The procedure returned: `value` decoded with its return type (`raw` is the BSATN the host sent).

    What its transactions changed reaches the cache as ordinary transaction updates, before this answer.
    """

    procedure: str
    timestamp: Timestamp
    value: Any
    raw: bytes

    @property
    def ok(self) -> bool:
        """Always True."""
        return True


@dataclass(frozen=True, slots=True)
class ProcedureFailed:
    """The procedure failed (it threw, hit a limit, got bad arguments, or does not exist): the host's text."""

    procedure: str
    timestamp: Timestamp
    message: str

    @property
    def ok(self) -> bool:
        """Always False."""
        return False


ProcedureCallResult = ProcedureReturned | ProcedureFailed


@dataclass(frozen=True, slots=True)
class QueryTable:
    """One table's rows in a one-off query answer.

    `rows` are decoded with the table's row type when the query selected whole rows; for projections and
    aggregates (whose shape the wire does not describe) `rows` is empty and only `raw_rows` is filled.
    """

    table: str
    rows: tuple[Any, ...]
    raw_rows: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class QueryResult:
    """The answer to `one_off_query`."""

    tables: tuple[QueryTable, ...]

    def rows(self, table: str) -> tuple[Any, ...]:
        """Decoded rows of one table (empty when absent)."""
        for entry in self.tables:
            if entry.table == table:
                return entry.rows
        return ()
