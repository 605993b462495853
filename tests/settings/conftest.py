"""Every settings test starts from an environment with no AUTOPILOT_SYNC_* variable, whatever the shell has."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop the project's variables so a developer's shell cannot change a test's outcome."""
    for name in list(os.environ):
        if name.upper().startswith("AUTOPILOT_SYNC_"):
            monkeypatch.delenv(name)
