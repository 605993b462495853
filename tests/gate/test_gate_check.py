"""The gate fails on planted legacy symbols and broken or overdue exceptions, and passes the real repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from gate_helpers import FANOUT, JOIN, OLD_TOKEN_ROUTE, REPO_ROOT, RETIRED_NAME, GateRun, exception_entry, write

from autopilot_sync.gate.symbols import load_blocked_symbols


def test_tracked_violation_fails_with_path_line_symbol_and_reason(repo: Path, run_gate: GateRun) -> None:
    write(repo, "src/client.py", f'"""Client."""\nFRAME = "{JOIN}"\n')
    subprocess.run(["git", "-C", str(repo), "add", "src/client.py"], check=True)
    result = run_gate(repo)
    assert result.exit_code == 1
    assert f"src/client.py:2: {JOIN} (Phoenix channel frame;" in result.output
    assert "FAILED" in result.output


def test_uncommitted_new_file_is_scanned_too(repo: Path, run_gate: GateRun) -> None:
    write(repo, "docs/notes.md", f"we used to send {FANOUT}\n")
    result = run_gate(repo)
    assert result.exit_code == 1
    assert f"docs/notes.md:1: {FANOUT}" in result.output


def test_case_insensitive_symbol_matches_any_case(repo: Path, run_gate: GateRun) -> None:
    write(repo, "src/names.py", f"class {RETIRED_NAME}Client: ...\n")
    result = run_gate(repo)
    assert result.exit_code == 1
    assert "src/names.py:1: " + RETIRED_NAME + " (naming from a retired sync backend" in result.output


def test_every_hit_is_reported_not_only_the_first(repo: Path, run_gate: GateRun) -> None:
    write(repo, "a.txt", f"{JOIN} {OLD_TOKEN_ROUTE}\n\n{JOIN}\n")
    result = run_gate(repo)
    assert result.exit_code == 1
    assert f"a.txt:1: {JOIN}" in result.output
    assert f"a.txt:1: {OLD_TOKEN_ROUTE}" in result.output
    assert f"a.txt:3: {JOIN}" in result.output


def test_adr_directory_blocked_list_and_ignored_files_may_name_symbols(repo: Path, run_gate: GateRun) -> None:
    write(repo, "docs/adr/0001-decision.md", f"Forbidden: {JOIN}\n")
    write(repo, ".gitignore", "build/\n")
    write(repo, "build/generated.py", f"{JOIN}\n")
    result = run_gate(repo)
    assert result.exit_code == 0, result.output
    assert "gate check ok" in result.output


def test_adr_exclusion_is_a_directory_not_a_prefix_of_any_name(repo: Path, run_gate: GateRun) -> None:
    write(repo, "docs/adr-notes.md", f"{JOIN}\n")
    assert run_gate(repo).exit_code == 1


def test_binary_files_are_skipped(repo: Path, run_gate: GateRun) -> None:
    (repo / "blob.bin").write_bytes(b"\0\x01" + JOIN.encode())
    assert run_gate(repo).exit_code == 0


def test_outside_git_the_tree_is_walked_minus_tool_directories(tmp_path: Path, run_gate: GateRun) -> None:
    write(tmp_path, "gate/blocked-symbols.toml", (REPO_ROOT / "gate" / "blocked-symbols.toml").read_text())
    write(tmp_path, "gate/exceptions.toml", "")
    write(tmp_path, ".venv/lib/site.py", f"{JOIN}\n")
    write(tmp_path, "node_modules/pkg/index.js", f"{JOIN}\n")
    assert run_gate(tmp_path).exit_code == 0
    write(tmp_path, "src/app.py", f"{JOIN}\n")
    result = run_gate(tmp_path)
    assert result.exit_code == 1
    assert f"src/app.py:1: {JOIN}" in result.output
    assert ".venv" not in result.output


def test_unexpired_exception_covers_its_symbol_on_its_path(repo: Path, run_gate: GateRun) -> None:
    write(repo, "src/control/alias.py", f'ROUTE = "{OLD_TOKEN_ROUTE}"\n')
    write(repo, "gate/exceptions.toml", exception_entry())
    result = run_gate(repo, "2026-03-31")
    assert result.exit_code == 0, result.output
    assert "1 covered by exceptions" in result.output


def test_exception_does_not_cover_another_path_or_symbol(repo: Path, run_gate: GateRun) -> None:
    write(repo, "src/control/alias.py", f'ROUTE = "{OLD_TOKEN_ROUTE}"\nFRAME = "{JOIN}"\n')
    write(repo, "src/desktop/token.py", f'ROUTE = "{OLD_TOKEN_ROUTE}"\n')
    write(repo, "gate/exceptions.toml", exception_entry())
    result = run_gate(repo, "2026-03-01")
    assert result.exit_code == 1
    assert f"src/control/alias.py:2: {JOIN}" in result.output
    assert f"src/desktop/token.py:1: {OLD_TOKEN_ROUTE}" in result.output
    assert f"src/control/alias.py:1: {OLD_TOKEN_ROUTE}" not in result.output


def test_expired_exception_stops_covering_the_day_after_expiry(repo: Path, run_gate: GateRun) -> None:
    write(repo, "src/control/alias.py", f'ROUTE = "{OLD_TOKEN_ROUTE}"\n')
    write(repo, "gate/exceptions.toml", exception_entry())
    result = run_gate(repo, "2026-04-01")
    assert result.exit_code == 1
    assert f"src/control/alias.py:1: {OLD_TOKEN_ROUTE}" in result.output


def test_exception_overdue_by_more_than_14_days_fails_on_its_own(repo: Path, run_gate: GateRun) -> None:
    write(repo, "gate/exceptions.toml", exception_entry())
    within_grace = run_gate(repo, "2026-04-14")
    assert within_grace.exit_code == 0, within_grace.output
    assert "warning: exception 'old-token-alias' expired on 2026-03-31" in within_grace.output
    overdue = run_gate(repo, "2026-04-15")
    assert overdue.exit_code == 1
    assert "exception 'old-token-alias' expired on 2026-03-31, more than 14 days ago: non-compliant" in overdue.output


def test_malformed_exception_fails_naming_entry_and_field(repo: Path, run_gate: GateRun) -> None:
    write(repo, "gate/exceptions.toml", exception_entry() + exception_entry(id='"second"', owner=""))
    result = run_gate(repo)
    assert result.exit_code == 1
    assert "exception 2 ('second'): field 'owner': expected a non-empty string" in result.output


def test_registry_that_is_not_toml_fails(repo: Path, run_gate: GateRun) -> None:
    write(repo, "gate/exceptions.toml", "[[exception]\nid = \n")
    result = run_gate(repo)
    assert result.exit_code == 1
    assert "cannot be read as TOML" in result.output


def test_missing_blocked_list_fails_instead_of_passing(tmp_path: Path, run_gate: GateRun) -> None:
    result = run_gate(tmp_path)
    assert result.exit_code == 1
    assert "blocked-symbols.toml: file not found" in result.output


def test_the_repository_itself_passes(run_gate: GateRun) -> None:
    result = run_gate(REPO_ROOT)
    assert result.exit_code == 0, result.output
    assert "gate check ok" in result.output


# Members of each legacy family that no literal list spelled: Phoenix channel frames and sockets, polling of topics,
# topic fanout, in-process publishers, retired backend naming (assembled so this file never spells them).
LEGACY_FAMILY_MEMBERS = [
    "phx" + "_heartbeat",
    "phx" + "_error",
    "PHX" + "_CLOSE",
    "/socket/" + "websocket",
    "new " + "Phoenix." + "Socket(url)",
    "import {Socket} from 'phoe" + "nix'",
    "GET /sync/" + "topics/poll",
    "def topic" + "_poll():",
    "pollTo" + "pics()",
    "sync:" + "update_many",
    "POST /sync/" + "fanout",
    "spacetime_publisher" + "_in_memory",
    "In" + "MemoryPublisher()",
    "in-memory" + " publisher",
    "Kha" + "laClient",
    "con" + "vex_url",
]


@pytest.mark.parametrize("text", LEGACY_FAMILY_MEMBERS)
def test_every_member_of_a_legacy_family_fails_the_gate(repo: Path, run_gate: GateRun, text: str) -> None:
    write(repo, "src/legacy.py", f"x = {text!r}\n")
    result = run_gate(repo)
    assert result.exit_code == 1, result.output
    symbols = load_blocked_symbols(REPO_ROOT / "gate" / "blocked-symbols.toml")
    (family,) = [item for item in symbols if item.occurs_in(text)]
    assert f"src/legacy.py:1: {family.find_in(text)} ({family.reason})" in result.output
