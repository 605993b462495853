"""docs/control.md lists exactly the error codes the service can answer, each with its status and meaning."""

from __future__ import annotations

import re
from pathlib import Path

from autopilot_sync.control.errors import ControlErrorCode
from autopilot_sync.nostr.errors import AuthErrorCode

DOC = Path(__file__).resolve().parents[2] / "docs" / "control.md"


def test_error_table_matches_the_enum() -> None:
    rows = re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \| (.+) \|$", DOC.read_text(), flags=re.MULTILINE)
    assert [(code, int(status), meaning) for code, status, meaning in rows] == [
        (code.value, code.status, code.meaning) for code in ControlErrorCode
    ]


def test_every_nip98_refusal_is_a_401_with_the_same_code() -> None:
    for auth in AuthErrorCode:
        assert ControlErrorCode.from_auth(auth).value == auth.value
        assert ControlErrorCode.from_auth(auth).status == 401
