"""Fixtures of the sync module tests (helpers live in sync_module_helpers.py: conftest modules are not importable)."""

from pathlib import Path

import pytest
from sync_module_helpers import engine, sync_module
from typescript_twin import build_twin, node_available

__all__ = ["engine", "sync_module", "typescript_sync_module"]


@pytest.fixture(scope="session")
def typescript_sync_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The TypeScript twin built from `modules/autopilot-sync` (cached by source hash under pytest's temp root)."""
    if not node_available():
        pytest.skip("node and npm are needed to build the TypeScript twin (./dev test installs them)")
    return build_twin(tmp_path_factory.getbasetemp().parent / "typescript-modules")
