"""Fixtures for the TypeScript-module runner spike: a real Node child running a module built on the pinned library."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from autopilot_sync.jsmodule import JsModuleRunner, SpikeTableDouble
from autopilot_sync.jsmodule.runner import RunnerLimits

ROOT = Path(__file__).resolve().parents[2]
SERVER_BUNDLE = ROOT / "conformance" / "node_modules" / "spacetimedb" / "dist" / "server" / "index.mjs"
TEMPLATE = Path(__file__).with_name("notes_module.mjs.in")


@pytest.fixture
def notes_module(tmp_path: Path) -> Path:
    """The notes module written next to the test, importing the pinned library's server bundle by file URL."""
    if shutil.which("node") is None or not SERVER_BUNDLE.is_file():
        pytest.skip("node or conformance/node_modules missing (./dev test installs them)")
    path = tmp_path / "notes_module.mjs"
    path.write_text(TEMPLATE.read_text().replace("@SPACETIMEDB_SERVER@", SERVER_BUNDLE.as_uri()))
    return path


@pytest.fixture
def tables() -> SpikeTableDouble:
    """The spike double standing in for the engine's datastore (unit-test double, not the engine)."""
    return SpikeTableDouble(["note"])


@pytest.fixture
def runner(notes_module: Path, tables: SpikeTableDouble) -> Iterator[JsModuleRunner]:
    """A started runner with a small heap and a short per-call limit so containment tests stay quick."""
    with JsModuleRunner(notes_module, tables, limits=RunnerLimits(heap_mb=48, call_timeout_s=3.0)) as started:
        yield started
