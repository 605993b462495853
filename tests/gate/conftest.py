"""Fixtures for the zero-legacy gate: throwaway repositories that carry the real blocked-symbol list."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from gate_helpers import REPO_ROOT, GateRun

from autopilot_sync.cli import main


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """An empty git work tree with the project's real blocked-symbol list and an empty exception registry."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "gate").mkdir()
    shutil.copy(REPO_ROOT / "gate" / "blocked-symbols.toml", tmp_path / "gate" / "blocked-symbols.toml")
    (tmp_path / "gate" / "exceptions.toml").write_text("# none\n", encoding="utf-8")
    return tmp_path


@pytest.fixture
def run_gate() -> GateRun:
    """Run `autopilot-sync gate check --root <root> [--today <day>]` in-process and return the click result."""

    def run(root: Path, today: str | None = None) -> Result:
        args = ["gate", "check", "--root", str(root)]
        if today is not None:
            args += ["--today", today]
        return CliRunner().invoke(main, args)

    return run
