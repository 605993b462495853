"""The compliance signoff: green on this repository, red on each kind of planted violation."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from autopilot_sync.cli import main
from autopilot_sync.ops.evidence import stamp

ROOT = Path(__file__).resolve().parents[2]
LEGACY_TOKEN_ROUTE = "/api/" + "spacetime/token"  # built by concatenation so this file never spells it


def signoff(root: Path, out: Path, *extra: str) -> tuple[int, str, dict[str, object]]:
    result = CliRunner().invoke(main, ["compliance", "signoff", "--root", str(root), "--out", str(out), *extra])
    report = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert out.read_text(encoding="utf-8").startswith("# Compliance signoff")
    return result.exit_code, result.output, report


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of what the signoff reads (no git: every file is scanned)."""
    root = tmp_path / "tree"
    root.mkdir()
    shutil.copytree(ROOT / "gate", root / "gate")
    shutil.copytree(ROOT / "docs", root / "docs")
    shutil.copy(ROOT / "README.md", root / "README.md")
    return root


def checks(report: dict[str, object]) -> dict[str, bool]:
    return {check["name"]: check["ok"] for check in report["checks"]}  # type: ignore[attr-defined, index]


def passing_results(root: Path, suites: tuple[str, ...] = ("chaos", "end-to-end", "two-client-handshake")) -> Path:
    """Result files stamped for the tree at `root` now, as the verification suites write them."""
    results = root / "var" / "verification"
    results.mkdir(parents=True, exist_ok=True)
    for suite in suites:
        (results / f"{suite}.json").write_text(json.dumps({"suite": suite, "status": "passed", **stamp(root)}))
    return results


def test_signoff_checks_this_repository(tmp_path: Path) -> None:
    _, output, report = signoff(ROOT, tmp_path / "signoff.md", "--suite", "none-expected")
    verdicts = checks(report)
    assert all(ok for name, ok in verdicts.items() if name != "verification-suites"), output
    assert set(verdicts) == {
        "blocked-symbols",
        "exception-registry",
        "docs-cli",
        "docs-env",
        "verification-suites",
    }


def test_the_copied_tree_is_green_with_results_stamped_for_it(tree: Path, tmp_path: Path) -> None:
    passing_results(tree)
    code, output, _ = signoff(tree, tmp_path / "s.md")
    assert code == 0, output


def test_a_planted_legacy_symbol_turns_it_red_with_evidence(tree: Path, tmp_path: Path) -> None:
    (tree / "src").mkdir()
    (tree / "src" / "client.py").write_text(f'URL = "{LEGACY_TOKEN_ROUTE}"\n', encoding="utf-8")
    code, output, report = signoff(tree, tmp_path / "s.md")
    assert code == 1
    assert checks(report)["blocked-symbols"] is False
    assert "HIT src/client.py:1: symbol id legacy-token-route" in output
    assert LEGACY_TOKEN_ROUTE not in (tmp_path / "s.md").read_text(encoding="utf-8"), "evidence names ids only"


def test_an_undocumented_command_and_stale_env_docs_are_red(tree: Path, tmp_path: Path) -> None:
    readme = (tree / "README.md").read_text(encoding="utf-8")
    for doc in [tree / "README.md", *(tree / "docs").rglob("*.md")]:
        text = doc.read_text(encoding="utf-8").replace("compliance signoff", "compliance")
        doc.write_text(text, encoding="utf-8")
    config = tree / "docs" / "configuration.md"
    config.write_text(config.read_text(encoding="utf-8").replace("`127.0.0.1:3000`", "`127.0.0.1:4000`"))
    code, output, report = signoff(tree, tmp_path / "s.md")
    assert code == 1 and readme
    assert checks(report)["docs-cli"] is False and checks(report)["docs-env"] is False
    assert "not documented: autopilot-sync compliance signoff" in output


def test_suites_are_red_when_failed_and_when_missing(tree: Path, tmp_path: Path) -> None:
    results = passing_results(tree)
    (results / "chaos.json").write_text(json.dumps({"suite": "chaos", "status": "failed", **stamp(tree)}))
    code, output, _ = signoff(tree, tmp_path / "s.md")
    assert code == 1 and "chaos: failed" in output
    passing_results(tree)
    assert signoff(tree, tmp_path / "s.md")[0] == 0
    (results / "chaos.json").unlink()
    (results / "history-chaos-1.json").write_text(json.dumps({"events": []}), encoding="utf-8")
    code, output, report = signoff(tree, tmp_path / "s.md")
    assert code == 1 and "chaos: not run" in output, "every expected suite is required"
    assert "1 of 3 suites passed" not in output or report["verdict"] == "red"


def test_a_result_from_another_tree_is_foreign(tree: Path, tmp_path: Path) -> None:
    passing_results(tree)
    (tree / "README.md").write_text((tree / "README.md").read_text() + "\nedited after the run\n")
    code, output, _ = signoff(tree, tmp_path / "s.md")
    assert code == 1
    assert "chaos: foreign" in output and "end-to-end: foreign" in output


def test_an_old_or_unstamped_result_is_refused(tree: Path, tmp_path: Path) -> None:
    results = passing_results(tree)
    old = stamp(tree, now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=13))
    (results / "chaos.json").write_text(json.dumps({"suite": "chaos", "status": "passed", **old}))
    (results / "end-to-end.json").write_text(json.dumps({"suite": "end-to-end", "status": "passed"}))
    code, output, _ = signoff(tree, tmp_path / "s.md")
    assert code == 1 and "chaos: stale" in output and "end-to-end: unstamped" in output
    assert signoff(tree, tmp_path / "s.md", "--max-age-hours", "14", "--suite", "chaos")[0] == 0


def test_only_an_active_registry_waiver_excuses_a_missing_suite(tree: Path, tmp_path: Path) -> None:
    passing_results(tree, ("end-to-end", "two-client-handshake"))
    waiver = """
[[waiver]]
id = "no-chaos-here"
suite = "chaos"
owner = "owner:verification"
expires = {expires}
deletion_issue = "https://example.invalid/issues/2"
reason = "the fault proxy cannot run on this runner"
"""
    registry = tree / "gate" / "exceptions.toml"
    registry.write_text(registry.read_text() + waiver.format(expires="2999-01-01"))
    passing_results(tree, ("end-to-end", "two-client-handshake"))  # the registry edit changed the tree
    code, output, _ = signoff(tree, tmp_path / "s.md")
    assert code == 0, output
    assert "waived: no-chaos-here" in (tmp_path / "s.md").read_text()
    registry.write_text(registry.read_text().replace("2999-01-01", "2020-01-01"))
    passing_results(tree, ("end-to-end", "two-client-handshake"))
    code, output, _ = signoff(tree, tmp_path / "s.md")
    assert code == 1 and "chaos: not run" in output


def test_final_mode_needs_an_empty_exception_registry(tree: Path, tmp_path: Path) -> None:
    (tree / "gate" / "exceptions.toml").write_text(
        """
[[exception]]
id = "old-alias"
symbol = "legacy-token-route"
path = "src/alias.py"
owner = "owner:control"
expires = 2999-01-01
deletion_issue = "https://example.invalid/issues/1"
blast_radius = "old clients"
rollback = "revert"
""",
        encoding="utf-8",
    )
    passing_results(tree)
    assert signoff(tree, tmp_path / "s.md")[0] == 0
    code, output, report = signoff(tree, tmp_path / "s.md", "--final")
    assert code == 1 and checks(report)["exception-registry"] is False
    assert "final signoff needs an empty registry" in output
