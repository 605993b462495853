"""`autopilot-sync gate`: the zero-legacy gate CI runs before anything else."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import click

from autopilot_sync.gate.exceptions import EXCEPTIONS_PATH, GRACE, load_exceptions
from autopilot_sync.gate.files import list_files, read_text
from autopilot_sync.gate.registry import RegistryError
from autopilot_sync.gate.scan import GateReport, evaluate
from autopilot_sync.gate.symbols import BLOCKED_SYMBOLS_PATH, load_blocked_symbols


@click.group()
def gate() -> None:
    """Zero-legacy gates (ADR 0001): legacy transport symbols fail CI unless an unexpired exception covers them.

    \b
    Example:
      autopilot-sync gate check
    """


@gate.command("check")
@click.option(
    "--root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Repository to scan (default: the git work tree around the current directory).",
)
@click.option(
    "--today",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Date to judge exception expiry against, YYYY-MM-DD (default: today).",
)
def check(root: Path | None, today: dt.datetime | None) -> None:
    """Scan the tree for blocked legacy symbols; exit 1 on a hit, an overdue exception or a broken registry.

    Reads gate/blocked-symbols.toml and gate/exceptions.toml under the root, scans every git-tracked or new,
    non-ignored text file (all files outside git), and prints `path:line: symbol (reason)` per hit.

    \b
    Example:
      autopilot-sync gate check
      autopilot-sync gate check --root ../other-checkout --today 2026-04-01
    """
    from autopilot_sync.checkout import checkout_root

    base = checkout_root(root, BLOCKED_SYMBOLS_PATH, "gate check")
    day = today.date() if today is not None else dt.date.today()
    try:
        symbols = load_blocked_symbols(base / BLOCKED_SYMBOLS_PATH)
        exceptions = load_exceptions(base / EXCEPTIONS_PATH, {symbol.id for symbol in symbols})
    except RegistryError as exc:
        click.echo(f"gate check: registry error: {exc}", err=True)
        raise SystemExit(1) from None
    report = evaluate(_texts(base), symbols, exceptions, day)
    _print_report(report, len(symbols))
    if not report.passed:
        raise SystemExit(1)


def _texts(root: Path) -> Iterator[tuple[str, str]]:
    """Stream `(path, text)` for each scannable file so large trees are never held in memory at once."""
    for relative in list_files(root):
        text = read_text(root, relative)
        if text is not None:
            yield relative, text


def _print_report(report: GateReport, symbol_count: int) -> None:
    """Hits on stdout (the actionable list), exception notes on stderr, then a one-line verdict."""
    for hit in report.hits:
        click.echo(hit.render())
    for exception in report.noncompliant:
        click.echo(
            f"{EXCEPTIONS_PATH}: exception {exception.id!r} expired on {exception.expires}, more than "
            f"{GRACE.days} days ago: non-compliant; delete it ({exception.deletion_issue}) or renew it",
            err=True,
        )
    for exception in report.lapsed:
        click.echo(
            f"{EXCEPTIONS_PATH}: warning: exception {exception.id!r} expired on {exception.expires} and no longer "
            f"covers anything; CI fails from {exception.expires + GRACE + dt.timedelta(days=1)} unless it is removed",
            err=True,
        )
    verdict = "ok" if report.passed else "FAILED"
    click.echo(
        f"gate check {verdict}: {report.files_scanned} files scanned for {symbol_count} blocked symbols, "
        f"{len(report.hits)} hits, {len(report.covered)} covered by exceptions, "
        f"{len(report.noncompliant)} overdue exceptions"
    )
