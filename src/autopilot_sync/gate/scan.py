"""The gate's decision, pure: given file texts, blocked symbols, exceptions and today's date, what fails."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase

from autopilot_sync.gate.exceptions import GateException
from autopilot_sync.gate.symbols import BLOCKED_SYMBOLS_PATH, BlockedSymbol

EXCLUDED_PREFIXES = ("docs/adr/",)
"""Directories allowed to name blocked symbols: the decision records that forbid them."""

EXCLUDED_FILES = frozenset({BLOCKED_SYMBOLS_PATH.as_posix()})
"""Files allowed to name blocked symbols: the list that defines them."""


@dataclass(frozen=True)
class Hit:
    """One blocked symbol on one line of one file."""

    path: str
    line: int
    symbol: BlockedSymbol
    text: str = ""
    """What matched on the line (the symbol itself, or the member of a pattern's family that was found)."""

    def render(self) -> str:
        """`path:line: text (reason)`, the form editors and CI logs turn into links."""
        return f"{self.path}:{self.line}: {self.text or self.symbol.symbol} ({self.symbol.reason})"


@dataclass(frozen=True)
class GateReport:
    """Everything the gate found; it passes only with no uncovered hit and no non-compliant exception."""

    files_scanned: int
    hits: tuple[Hit, ...]
    covered: tuple[tuple[Hit, GateException], ...]
    noncompliant: tuple[GateException, ...]
    lapsed: tuple[GateException, ...]

    @property
    def passed(self) -> bool:
        """Whether CI may go on."""
        return not self.hits and not self.noncompliant


def is_excluded(path: str) -> bool:
    """Whether `path` is one of the few places allowed to spell blocked symbols."""
    return path in EXCLUDED_FILES or path.startswith(EXCLUDED_PREFIXES)


def find_hits(path: str, text: str, symbols: Iterable[BlockedSymbol]) -> Iterator[Hit]:
    """Every (line, symbol) occurrence in `text`, lines numbered from 1."""
    candidates = tuple(symbols)
    for number, line in enumerate(text.splitlines(), start=1):
        for symbol in candidates:
            found = symbol.find_in(line)
            if found is not None:
                yield Hit(path, number, symbol, found)


def covering_exception(hit: Hit, exceptions: Iterable[GateException], today: dt.date) -> GateException | None:
    """The active exception for this hit's symbol whose glob matches its path, if any."""
    for exception in exceptions:
        if exception.symbol == hit.symbol.id and exception.is_active(today) and fnmatchcase(hit.path, exception.path):
            return exception
    return None


def evaluate(
    files: Iterable[tuple[str, str]],
    symbols: tuple[BlockedSymbol, ...],
    exceptions: tuple[GateException, ...],
    today: dt.date,
) -> GateReport:
    """Decide the gate for `(path, text)` pairs; excluded paths are skipped, not scanned."""
    scanned = 0
    hits: list[Hit] = []
    covered: list[tuple[Hit, GateException]] = []
    for path, text in files:
        if is_excluded(path):
            continue
        scanned += 1
        for hit in find_hits(path, text, symbols):
            exception = covering_exception(hit, exceptions, today)
            if exception is None:
                hits.append(hit)
            else:
                covered.append((hit, exception))
    return GateReport(
        files_scanned=scanned,
        hits=tuple(hits),
        covered=tuple(covered),
        noncompliant=tuple(item for item in exceptions if item.is_noncompliant(today)),
        lapsed=tuple(item for item in exceptions if not item.is_active(today) and not item.is_noncompliant(today)),
    )
