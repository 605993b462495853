"""docs/nostr.md and the code agree: every NIP-98 error code has a row in the doc's table, and no row is stale."""

from __future__ import annotations

import re
from pathlib import Path

from autopilot_sync.nostr import AuthErrorCode

DOC = Path(__file__).resolve().parents[2] / "docs" / "nostr.md"


def test_every_auth_error_code_is_documented_once() -> None:
    rows = re.findall(r"^\| `([a-z_]+)` \|", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert sorted(rows) == sorted(code.value for code in AuthErrorCode)
