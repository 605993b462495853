"""The compliance signoff: one report that says whether the tree meets ADR 0001 and its docs match the code.

Why a report and not just CI's exit code: the final signoff (convergence plan, issue 26) must be an artifact a
reviewer can read — code-search evidence, which gates ran green, docs parity — and a machine can diff between two
releases. So every check yields a verdict *and* its evidence, rendered as Markdown and JSON from one value.

Checks (each red or green):

- `blocked-symbols`: the gate's scan finds no blocked symbol outside `docs/adr/`, the list, and active exceptions;
- `exception-registry`: the registry parses and nothing is overdue by more than 14 days (`--final`: it is empty);
- `docs-cli`: every CLI command path appears in README.md or docs/ (`autopilot-sync <group> ... <command>`);
- `docs-env`: docs/configuration.md equals what `autopilot-sync config docs` generates;
- `verification-suites`: every expected suite left a passing result *for this tree*: a result is evidence only
  when its stamp (`ops/evidence.py`: commit, fingerprint of the files, finish time) names the tree being judged
  and is fresher than `--max-age-hours`; a foreign, stale, unstamped, failed or missing result is red, unless an
  active `[[waiver]]` in gate/exceptions.toml (owner, expiry, deletion issue) waives that suite.

Suite result files are `var/verification/<suite>.json`, `{"suite": "...", "status": "passed"|"failed", "commit":
..., "tree": ..., "finished_at": ...}` (`"passed"` or `"ok": true|false` is accepted for the status), written by
the suites themselves; other JSON files there without any of those keys (histories, journals) are not results and
are skipped.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from autopilot_sync.gate.exceptions import EXCEPTIONS_PATH, SuiteWaiver, load_exceptions, load_suite_waivers
from autopilot_sync.gate.files import list_files, read_text
from autopilot_sync.gate.registry import RegistryError
from autopilot_sync.gate.scan import evaluate
from autopilot_sync.gate.symbols import BLOCKED_SYMBOLS_PATH, load_blocked_symbols
from autopilot_sync.ops.evidence import tree_fingerprint
from autopilot_sync.settings.docs import DOCS_PATH, render
from autopilot_sync.settings.registry import SERVICES

VERIFICATION_DIR = Path("var/verification")
"""Where verification suites leave their JSON results, relative to the repository root."""

EXPECTED_SUITES = ("two-client-handshake", "end-to-end", "chaos")
"""Suites whose results the final signoff needs (convergence plan, exit gates 3 and issue 20)."""

_PASSED = {"passed", "green", "ok", "success"}
_FAILED = {"failed", "red", "error", "failure"}
_MAX_EVIDENCE = 50
_RESULT_KEYS = {"suite", "status", "passed", "ok"}
DEFAULT_MAX_AGE = dt.timedelta(hours=12)
"""How old a suite result may be and still count: a run of today's tree, not last week's."""


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the verdict with the evidence behind it."""

    name: str
    ok: bool
    summary: str
    evidence: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """For the JSON report."""
        return {"name": self.name, "ok": self.ok, "summary": self.summary, "evidence": list(self.evidence)}


@dataclass(frozen=True, slots=True)
class SuiteResult:
    """What one verification suite reported, or that it did not run."""

    suite: str
    status: str  # passed | failed | not run | unreadable | unstamped | foreign | stale
    source: str
    required: bool
    finished_at: str = ""
    commit: str = ""
    waiver: str = ""

    @property
    def ok(self) -> bool:
        """Passed for this tree, or waived, or an extra (unexpected) suite that did not fail."""
        if self.status == "passed" or self.waiver:
            return True
        return not self.required and self.status not in ("failed", "unreadable")


@dataclass(frozen=True, slots=True)
class SignoffReport:
    """Every check; the signoff is green only when all are."""

    generated_at: str
    root: str
    options: dict[str, Any]
    checks: tuple[Check, ...]
    suites: tuple[SuiteResult, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """Green overall."""
        return all(check.ok for check in self.checks)

    def to_json(self) -> dict[str, Any]:
        """The machine-readable report."""
        return {
            "verdict": "green" if self.ok else "red",
            "generated_at": self.generated_at,
            "root": self.root,
            "options": self.options,
            "checks": [check.to_json() for check in self.checks],
            "suites": [
                {
                    "suite": s.suite,
                    "status": s.status,
                    "required": s.required,
                    "source": s.source,
                    "finished_at": s.finished_at,
                    "commit": s.commit,
                    "waiver": s.waiver,
                }
                for s in self.suites
            ],
        }

    def markdown(self) -> str:
        """The human report."""
        lines = [
            "# Compliance signoff (ADR 0001: Spacetime-only sync)",
            "",
            f"- verdict: **{'GREEN' if self.ok else 'RED'}**",
            f"- generated: {self.generated_at}",
            f"- options: {', '.join(f'{k}={v}' for k, v in self.options.items())}",
            "",
            "| check | verdict | summary |",
            "|---|---|---|",
        ]
        lines += [f"| {c.name} | {'green' if c.ok else 'RED'} | {c.summary} |" for c in self.checks]
        if self.suites:
            lines += [
                "",
                "## Verification suites",
                "",
                "| suite | status | required | commit | finished | result file |",
                "|---|---|---|---|---|---|",
            ]
            lines += [
                f"| {s.suite} | {s.status}{f' (waived: {s.waiver})' if s.waiver else ''} | "
                f"{'yes' if s.required else 'no'} | {s.commit[:12] or '-'} | {s.finished_at or '-'} | "
                f"{s.source or '-'} |"
                for s in self.suites
            ]
        for check in self.checks:
            if check.evidence:
                lines += ["", f"## Evidence: {check.name}", ""]
                lines += [f"- {item}" for item in check.evidence[:_MAX_EVIDENCE]]
                if len(check.evidence) > _MAX_EVIDENCE:
                    lines.append(f"- ... {len(check.evidence) - _MAX_EVIDENCE} more in the JSON report")
        return "\n".join(lines) + "\n"


# ----- checks -----


def check_gate(root: Path, today: dt.date, final: bool) -> tuple[Check, Check]:
    """The blocked-symbol scan and the exception registry, judged exactly as `autopilot-sync gate check` does."""
    try:
        symbols = load_blocked_symbols(root / BLOCKED_SYMBOLS_PATH)
        exceptions = load_exceptions(root / EXCEPTIONS_PATH, {symbol.id for symbol in symbols})
    except RegistryError as exc:
        broken = Check("blocked-symbols", False, f"registry error: {exc}")
        return broken, Check("exception-registry", False, f"registry error: {exc}")
    texts = ((path, text) for path in list_files(root) if (text := read_text(root, path)) is not None)
    report = evaluate(texts, symbols, exceptions, today)
    scan = Check(
        "blocked-symbols",
        not report.hits,
        f"{report.files_scanned} files scanned for {len(symbols)} blocked symbols: {len(report.hits)} hits, "
        f"{len(report.covered)} covered by exceptions",
        (
            f"symbols searched (by id): {', '.join(symbol.id for symbol in symbols)}",
            *(f"HIT {hit.path}:{hit.line}: symbol id {hit.symbol.id}" for hit in report.hits),
            *(f"covered {hit.path}:{hit.line} by exception {exc.id}" for hit, exc in report.covered),
        ),
    )
    problems = [f"overdue by more than 14 days: {item.id} (expired {item.expires})" for item in report.noncompliant]
    if final and exceptions:
        problems.append(f"final signoff needs an empty registry; {len(exceptions)} entries remain")
    registry = Check(
        "exception-registry",
        not problems,
        f"{len(exceptions)} exceptions ({len(report.noncompliant)} overdue, {len(report.lapsed)} lapsed)"
        + ("; final mode" if final else ""),
        (
            *problems,
            *(
                f"{item.id}: symbol {item.symbol} under {item.path}, owner {item.owner}, expires {item.expires}, "
                f"deletion {item.deletion_issue}"
                for item in exceptions
            ),
        ),
    )
    return scan, registry


def command_paths(command: click.Command, prefix: Sequence[str] = ("autopilot-sync",)) -> Iterator[tuple[str, ...]]:
    """Every command path of the CLI (`("autopilot-sync", "runtime", "dead-letters", "list")`, ...)."""
    path = tuple(prefix)
    yield path
    if isinstance(command, click.Group):
        ctx = click.Context(command, info_name=path[-1])
        for name in command.list_commands(ctx):  # through the group, so lazily loaded subcommands count too
            sub = command.get_command(ctx, name)
            if sub is not None:
                yield from command_paths(sub, (*path, name))


def mentioned(path: Sequence[str], lines: Iterable[str]) -> bool:
    """Whether some line names the command: `autopilot-sync`, then the path's words in order (options between)."""
    words = path[1:]
    for line in lines:
        index = line.find(path[0])
        if index < 0:
            continue
        tokens = re.split(r"[\s`]+", line[index + len(path[0]) :])
        position = 0
        for token in tokens:
            if position < len(words) and token == words[position]:
                position += 1
        if position == len(words):
            return True
    return False


def doc_lines(root: Path) -> list[str]:
    """Lines of README.md and every Markdown file under docs/."""
    files = [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
    return [line for file in files if file.is_file() for line in file.read_text(encoding="utf-8").splitlines()]


def check_cli_docs(root: Path, cli: click.Command) -> Check:
    """Every command appears in the docs, so no operator has to learn a command from `--help` alone."""
    lines = doc_lines(root)
    paths = list(command_paths(cli))
    missing = [" ".join(path) for path in paths if not mentioned(path, lines)]
    return Check(
        "docs-cli",
        not missing,
        f"{len(paths) - len(missing)} of {len(paths)} CLI commands appear in README.md or docs/",
        tuple(f"not documented: {text}" for text in missing),
    )


def check_env_docs(root: Path) -> Check:
    """docs/configuration.md is what the settings classes generate (`autopilot-sync config docs --check`)."""
    page = root / DOCS_PATH
    current = page.read_text(encoding="utf-8") if page.is_file() else ""
    variables = sum(len(cls.fields) for cls in SERVICES)
    ok = current == render(SERVICES)
    return Check(
        "docs-env",
        ok,
        f"{DOCS_PATH} {'matches' if ok else 'differs from'} the {variables} variables of {len(SERVICES)} services",
        () if ok else ("regenerate with `autopilot-sync config docs`",),
    )


def _verdict(value: dict[str, Any], tree: str, now: dt.datetime, max_age: dt.timedelta) -> str:
    """What one result file is worth as evidence for the tree `tree` at `now`."""
    status = str(value.get("status", "")).lower()
    if status in _PASSED or value.get("passed") is True or value.get("ok") is True:
        verdict = "passed"
    elif status in _FAILED or value.get("passed") is False or value.get("ok") is False:
        return "failed"
    else:
        return "unreadable"
    if not value.get("tree") or not value.get("finished_at"):
        return "unstamped"
    if value.get("tree") != tree:
        return "foreign"
    try:
        finished = dt.datetime.fromisoformat(str(value["finished_at"]))
    except ValueError:
        return "unstamped"
    if finished.tzinfo is None or not dt.timedelta(minutes=-5) <= now - finished <= max_age:
        return "stale"
    return verdict


def read_suites(
    root: Path,
    expected: Sequence[str],
    waivers: Sequence[SuiteWaiver] = (),
    *,
    today: dt.date | None = None,
    now: dt.datetime | None = None,
    max_age: dt.timedelta = DEFAULT_MAX_AGE,
) -> list[SuiteResult]:
    """Every result file under var/verification/, judged against this tree, plus the expected suites that left none."""
    moment = now or dt.datetime.now(dt.UTC)
    day = today or moment.date()
    tree = tree_fingerprint(root)
    active = {waiver.suite: waiver.id for waiver in waivers if waiver.is_active(day)}
    directory = root / VERIFICATION_DIR
    found: dict[str, SuiteResult] = {}
    for file in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        source = file.relative_to(root).as_posix()
        try:
            value = json.loads(file.read_text(encoding="utf-8"))
            if not isinstance(value, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError):
            found[file.stem] = SuiteResult(file.stem, "unreadable", source, required=True)
            continue
        if not _RESULT_KEYS & set(value):
            continue  # another artifact of a suite (a recorded history, a journal), not its result
        name = str(value.get("suite") or file.stem)
        found[name] = SuiteResult(
            name,
            _verdict(value, tree, moment, max_age),
            source,
            required=name in expected,
            finished_at=str(value.get("finished_at", "")),
            commit=str(value.get("commit", "")),
            waiver=active.get(name, ""),
        )
    for name in expected:
        if name not in found:
            found[name] = SuiteResult(name, "not run", "", required=True, waiver=active.get(name, ""))
    return [found[name] for name in sorted(found)]


def check_suites(suites: Sequence[SuiteResult]) -> Check:
    """Green when every suite passed for this tree (or is waived by the registry) and none failed."""
    bad = [s for s in suites if not s.ok]
    passed = sum(1 for s in suites if s.status == "passed")
    waived = sum(1 for s in suites if s.waiver and s.status != "passed")
    return Check(
        "verification-suites",
        not bad,
        f"{passed} of {len(suites)} suites passed for this tree" + (f", {waived} waived" if waived else ""),
        tuple(f"{s.suite}: {s.status}" + (f" ({s.source})" if s.source else "") for s in bad),
    )


def _waivers(root: Path) -> tuple[SuiteWaiver, ...]:
    try:
        return load_suite_waivers(root / EXCEPTIONS_PATH)
    except RegistryError:
        return ()  # the exception-registry check reports the broken file; nothing is waived by a broken registry


def signoff(
    root: Path,
    cli: click.Command,
    *,
    final: bool = False,
    expected_suites: Sequence[str] = EXPECTED_SUITES,
    today: dt.date | None = None,
    max_age: dt.timedelta = DEFAULT_MAX_AGE,
) -> SignoffReport:
    """Run every check against the tree at `root`."""
    day = today or dt.date.today()
    scan, registry = check_gate(root, day, final)
    suites = read_suites(root, expected_suites, _waivers(root), today=day, max_age=max_age)
    checks = (scan, registry, check_cli_docs(root, cli), check_env_docs(root), check_suites(suites))
    return SignoffReport(
        generated_at=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        root=str(root),
        options={"final": final, "today": day.isoformat(), "max_age_hours": max_age.total_seconds() / 3600},
        checks=checks,
        suites=tuple(suites),
    )
