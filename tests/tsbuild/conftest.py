"""Fixtures for `autopilot-sync build`: the chat module project (installed by ./dev) and copies of it in tmp."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tsbuild_helpers import CHAT, run_build


@pytest.fixture
def chat_project() -> Path:
    """modules/chat with its pinned packages installed (`./dev test` runs `npm ci` there)."""
    if shutil.which("node") is None or not (CHAT / "node_modules" / ".bin" / "tsc").exists():
        pytest.skip("node or modules/chat/node_modules missing (./dev test installs them)")
    return CHAT


@pytest.fixture
def project_copy(chat_project: Path, tmp_path: Path) -> Path:
    """A copy of the chat project in tmp sharing its installed node_modules, for tests that break or build it."""
    copy = tmp_path / "project"
    copy.mkdir()
    for name in ("package.json", "tsconfig.json"):
        shutil.copy(chat_project / name, copy / name)
    shutil.copytree(chat_project / "src", copy / "src")
    (copy / "node_modules").symlink_to(chat_project / "node_modules", target_is_directory=True)
    return copy


@pytest.fixture(scope="module")
def built_chat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """modules/chat built once per test module by `autopilot-sync build`, as a user would build it."""
    if shutil.which("node") is None or not (CHAT / "node_modules" / ".bin" / "tsc").exists():
        pytest.skip("node or modules/chat/node_modules missing (./dev test installs them)")
    out = tmp_path_factory.mktemp("chat") / "chat.js"
    done = run_build("--project-path", str(CHAT), "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out
