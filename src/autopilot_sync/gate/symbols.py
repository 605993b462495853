"""The blocked-symbol list: strings whose presence means a legacy transport came back."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from autopilot_sync.gate.registry import (
    RegistryError,
    field_error,
    load_entries,
    reject_unknown_fields,
    required_text,
)

BLOCKED_SYMBOLS_PATH = Path("gate/blocked-symbols.toml")
"""Where the list lives, relative to the repository root (the hook that mirrors the gate skips `blocked*` files)."""

_ID = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
_FIELDS = frozenset({"id", "symbol", "reason", "ignore_case"})


@dataclass(frozen=True)
class BlockedSymbol:
    """One forbidden string: `id` is how exceptions refer to it (so they never spell it), `reason` says why."""

    id: str
    symbol: str
    reason: str
    ignore_case: bool = False

    def occurs_in(self, line: str) -> bool:
        """Whether the symbol appears anywhere in `line` (a plain substring, optionally case-insensitive)."""
        if self.ignore_case:
            return self.symbol.casefold() in line.casefold()
        return self.symbol in line


def load_blocked_symbols(path: Path) -> tuple[BlockedSymbol, ...]:
    """Parse and validate `[[blocked]]` entries; an empty or malformed list is an error, never an open gate."""
    symbols: list[BlockedSymbol] = []
    for label, entry in load_entries(path, "blocked"):
        reject_unknown_fields(path, label, entry, _FIELDS)
        symbol_id = required_text(path, label, entry, "id")
        if not _ID.fullmatch(symbol_id):
            raise field_error(path, label, "id", "lowercase words joined by '-', like 'legacy-token-route'")
        ignore_case = entry.get("ignore_case", False)
        if not isinstance(ignore_case, bool):
            raise field_error(path, label, "ignore_case", "true or false")
        symbol = entry.get("symbol")
        if not isinstance(symbol, str) or not symbol or symbol != symbol.strip():
            raise field_error(path, label, "symbol", "a non-empty string without surrounding spaces")
        symbols.append(
            BlockedSymbol(
                id=symbol_id,
                symbol=symbol,
                reason=required_text(path, label, entry, "reason"),
                ignore_case=ignore_case,
            )
        )
    if not symbols:
        raise RegistryError(f"{path}: no [[blocked]] entries: an empty list would let every legacy symbol back in")
    seen: set[str] = set()
    for item in symbols:
        if item.id in seen:
            raise RegistryError(f"{path}: id {item.id!r} is used by more than one entry")
        seen.add(item.id)
    return tuple(symbols)
