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
_FIELDS = frozenset({"id", "symbol", "pattern", "reason", "ignore_case"})


@dataclass(frozen=True)
class BlockedSymbol:
    """One forbidden string or family of strings: `id` is how exceptions refer to it (so they never spell it).

    `symbol` is a plain substring; `pattern` (a regular expression) covers a whole legacy family at once, such as
    every Phoenix channel frame name, so a spelling nobody listed (a new frame, a different separator) is caught
    too. Exactly one of the two is set. `reason` says why the family is forbidden.
    """

    id: str
    symbol: str
    reason: str
    ignore_case: bool = False
    pattern: re.Pattern[str] | None = None

    def find_in(self, line: str) -> str | None:
        """The offending text in `line`, or None (a substring test, or the pattern's first match)."""
        if self.pattern is not None:
            match = self.pattern.search(line)
            return match.group(0) if match else None
        if self.ignore_case:
            start = line.casefold().find(self.symbol.casefold())
            return None if start < 0 else line[start : start + len(self.symbol)]
        return self.symbol if self.symbol in line else None

    def occurs_in(self, line: str) -> bool:
        """Whether the symbol (or a member of the pattern's family) appears anywhere in `line`."""
        return self.find_in(line) is not None


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
        pattern_text = entry.get("pattern")
        if (symbol is None) == (pattern_text is None):
            raise field_error(path, label, "symbol", "exactly one of `symbol` (a string) or `pattern` (a regex)")
        compiled: re.Pattern[str] | None = None
        if pattern_text is not None:
            if not isinstance(pattern_text, str) or not pattern_text:
                raise field_error(path, label, "pattern", "a non-empty regular expression")
            try:
                compiled = re.compile(pattern_text, re.IGNORECASE if ignore_case else 0)
            except re.error as exc:
                raise field_error(path, label, "pattern", f"a valid regular expression ({exc})") from exc
            if compiled.search(""):
                raise field_error(path, label, "pattern", "a regular expression that does not match empty text")
            symbol = pattern_text
        elif not isinstance(symbol, str) or not symbol or symbol != symbol.strip():
            raise field_error(path, label, "symbol", "a non-empty string without surrounding spaces")
        symbols.append(
            BlockedSymbol(
                id=symbol_id,
                symbol=symbol,
                reason=required_text(path, label, entry, "reason"),
                ignore_case=ignore_case,
                pattern=compiled,
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
