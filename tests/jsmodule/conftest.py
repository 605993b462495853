"""Fixtures for TypeScript modules: real Node children running modules written on the pinned library."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from table_double import TableDouble

from autopilot_sync.jsmodule import JsModuleRunner
from autopilot_sync.jsmodule.runner import RunnerLimits

ROOT = Path(__file__).resolve().parents[2]
SERVER_BUNDLE = ROOT / "conformance" / "node_modules" / "spacetimedb" / "dist" / "server" / "index.mjs"
TEMPLATE = Path(__file__).with_name("notes_module.mjs.in")
ABI_TEMPLATE = Path(__file__).with_name("abi_module.mjs.in")


def write_module(template: Path, path: Path) -> Path:
    """`template` written to `path`, importing the pinned library's server bundle by file URL (skips without node)."""
    if shutil.which("node") is None or not SERVER_BUNDLE.is_file():
        pytest.skip("node or conformance/node_modules missing (./dev test installs them)")
    path.write_text(template.read_text().replace("@SPACETIMEDB_SERVER@", SERVER_BUNDLE.as_uri()))
    return path


@pytest.fixture
def notes_module(tmp_path: Path) -> Path:
    """The notes module (a small module for the runner's own tests)."""
    return write_module(TEMPLATE, tmp_path / "notes_module.mjs")


@pytest.fixture
def abi_module(tmp_path: Path) -> Path:
    """The ABI module: every syscall the library makes, lifecycle and scheduled reducers, and failure cases."""
    return write_module(ABI_TEMPLATE, tmp_path / "notes.js")


@pytest.fixture
def tables() -> TableDouble:
    """A unit-test double answering the runner's syscalls (not the engine)."""
    return TableDouble(["note"])


@pytest.fixture
def runner(notes_module: Path, tables: TableDouble) -> Iterator[JsModuleRunner]:
    """A started runner with a small heap and a short per-call limit so containment tests stay quick."""
    with JsModuleRunner(notes_module, tables, limits=RunnerLimits(heap_mb=48, call_timeout_s=3.0)) as started:
        yield started
