"""The exception registry: time-bounded, owned permissions for one blocked symbol on one surface."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from autopilot_sync.gate.registry import (
    RegistryError,
    field_error,
    load_entries,
    reject_unknown_fields,
    required_text,
)

EXCEPTIONS_PATH = Path("gate/exceptions.toml")
"""Where the registry lives, relative to the repository root."""

GRACE = dt.timedelta(days=14)
"""How long an expired exception may stay in the registry before CI fails (ADR 0001: renew or delete)."""

_FIELDS = frozenset(
    {"id", "symbol", "path", "owner", "expires", "deletion_issue", "blast_radius", "rollback"},
)
_WILDCARDS = re.compile(r"[*?\[\]/.]")


@dataclass(frozen=True)
class GateException:
    """Permission for one blocked symbol (by its id) under one path glob, until `expires` (inclusive).

    Every field the ADR demands is required: who owns it, when it ends, which issue deletes it, what it can break
    (`blast_radius`) and how to undo it (`rollback`).
    """

    id: str
    symbol: str
    path: str
    owner: str
    expires: dt.date
    deletion_issue: str
    blast_radius: str
    rollback: str

    def is_active(self, today: dt.date) -> bool:
        """Whether it still covers hits: only until its expiry date, never during the grace period."""
        return today <= self.expires

    def is_noncompliant(self, today: dt.date) -> bool:
        """Whether it is expired by more than the grace period, which fails the gate on its own."""
        return today > self.expires + GRACE


def load_exceptions(path: Path, symbol_ids: Collection[str]) -> tuple[GateException, ...]:
    """Parse and validate `[[exception]]` entries; `symbol_ids` are the ids the blocked list defines."""
    exceptions: list[GateException] = []
    for label, entry in load_entries(path, "exception"):
        reject_unknown_fields(path, label, entry, _FIELDS)
        text = {name: required_text(path, label, entry, name) for name in sorted(_FIELDS - {"expires"})}
        if text["symbol"] not in symbol_ids:
            raise field_error(path, label, "symbol", f"the id of a blocked symbol ({', '.join(sorted(symbol_ids))})")
        if not _WILDCARDS.sub("", text["path"]):
            raise field_error(path, label, "path", "a glob bounded to one surface (it must name a path, not just *)")
        expires = entry.get("expires")
        if not isinstance(expires, dt.date) or isinstance(expires, dt.datetime):
            raise field_error(path, label, "expires", "a TOML date like 2026-03-31 (unquoted)")
        exceptions.append(
            GateException(
                id=text["id"],
                symbol=text["symbol"],
                path=text["path"],
                owner=text["owner"],
                expires=expires,
                deletion_issue=text["deletion_issue"],
                blast_radius=text["blast_radius"],
                rollback=text["rollback"],
            )
        )
    seen: set[str] = set()
    for item in exceptions:
        if item.id in seen:
            raise RegistryError(f"{path}: id {item.id!r} is used by more than one exception")
        seen.add(item.id)
    return tuple(exceptions)


_WAIVER_FIELDS = frozenset({"id", "suite", "owner", "expires", "deletion_issue", "reason"})


@dataclass(frozen=True)
class SuiteWaiver:
    """Permission for the compliance signoff to be green without one verification suite's result, until `expires`.

    The signoff requires every expected suite; a suite that cannot run somewhere (a machine without the tool it
    needs) is waived here, owned and time-bounded like a symbol exception, never by a command-line flag.
    """

    id: str
    suite: str
    owner: str
    expires: dt.date
    deletion_issue: str
    reason: str

    def is_active(self, today: dt.date) -> bool:
        """Whether it still waives the suite (until its expiry date, inclusive)."""
        return today <= self.expires


def load_suite_waivers(path: Path) -> tuple[SuiteWaiver, ...]:
    """Parse and validate `[[waiver]]` entries of the exception registry."""
    waivers: list[SuiteWaiver] = []
    for label, entry in load_entries(path, "waiver"):
        reject_unknown_fields(path, label, entry, _WAIVER_FIELDS)
        text = {name: required_text(path, label, entry, name) for name in sorted(_WAIVER_FIELDS - {"expires"})}
        expires = entry.get("expires")
        if not isinstance(expires, dt.date) or isinstance(expires, dt.datetime):
            raise field_error(path, label, "expires", "a TOML date like 2026-03-31 (unquoted)")
        waivers.append(SuiteWaiver(expires=expires, **text))
    return tuple(waivers)
