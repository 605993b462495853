"""Shared pieces for the gate tests: the real repository root, blocked strings built by concatenation, TOML."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from click.testing import Result

REPO_ROOT = Path(__file__).resolve().parents[2]

# Blocked strings are assembled here so this file never spells one (the gate scans tests too).
JOIN = "phx" + "_join"
FANOUT = "sync:" + "update_batch"
OLD_TOKEN_ROUTE = "/api/v1/" + "sync/token"
RETIRED_NAME = "Con" + "Vex"

GateRun = Callable[..., Result]


def write(root: Path, relative: str, text: str) -> Path:
    """Create `relative` under `root` (with parents) holding `text`."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def exception_entry(**overrides: str) -> str:
    """One well-formed `[[exception]]` table; `overrides` replace fields, a value of "" drops the field."""
    fields = {
        "id": '"old-token-alias"',
        "symbol": '"legacy-token-route"',
        "path": '"src/control/alias.py"',
        "owner": '"owner:control"',
        "expires": "2026-03-31",
        "deletion_issue": '"https://example.invalid/issues/9"',
        "blast_radius": '"clients older than 0.2"',
        "rollback": '"revert the alias removal"',
    }
    fields.update(overrides)
    body = "".join(f"{name} = {value}\n" for name, value in fields.items() if value)
    return "[[exception]]\n" + body
