"""Importing a package loads only the floors below it: the SDK never loads the host, the floors never load a service.

Each package is imported whole (every module in it) in a fresh interpreter, and the `autopilot_sync` packages that
ended up in `sys.modules` are compared with the floors below. A fresh process per package because one import of the
host (or anything else) in this test process would hide the next package's own imports.

The same table is in docs/architecture.md ("Floors and import direction"); `test_the_docs_show_the_same_floors`
keeps the two equal.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

#: Floors from the bottom: a package may load packages on lower floors only (never its own floor, never higher).
FLOORS: tuple[tuple[str, ...], ...] = (
    ("spacetime", "backoff", "durable_files", "partial_package"),
    ("contract", "bindings", "sync_bindings"),
    (
        "nostr",
        "settings",
        "lifecycle",
        "cli_errors",
        "dataclass_methods",
        "http_limits",
        "statedir",
        "gate",
        "jsmodule",
        "auth",
        "tsbuild",
    ),
    ("module", "examples", "client", "host", "checkout"),
    ("control",),
    ("runtime", "desktop"),
    ("devtools", "exporter", "dbcli"),
    ("verification", "ops"),
    ("cli",),
    ("launch",),
)

#: Stricter than the floors: what some packages must never load even though it sits lower.
NEVER_LOADS: dict[str, frozenset[str]] = {
    # the shared vocabulary stands on the wire layer alone
    "contract": frozenset({"backoff", "durable_files"}),
    "bindings": frozenset({"backoff", "durable_files"}),
    # services reach the host and the sync module over the network only (docs/architecture.md)
    "control": frozenset({"host", "module"}),
    "runtime": frozenset({"host", "module"}),
    "desktop": frozenset({"host", "module"}),
    "exporter": frozenset({"host", "module"}),
    # the history checker judges recorded histories: pure, no host, no module
    "verification.checker": frozenset({"host", "module"}),
    "verification.history": frozenset({"host", "module"}),
}

#: Known violations, each removed by the named helper's work in issue 17: (importer, imported) -> who removes it.
#: Delete an entry once its fix is merged; `test_known_violations_are_still_real` says when one is stale.
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {}

SRC = Path(__file__).parents[2] / "src" / "autopilot_sync"

_PROBE = """
import importlib, pkgutil, sys
target = importlib.import_module("autopilot_sync." + sys.argv[1])
for info in pkgutil.walk_packages(getattr(target, "__path__", []), target.__name__ + "."):
    importlib.import_module(info.name)
print(" ".join(sorted({name.split(".")[1] for name in sys.modules if name.startswith("autopilot_sync.")})))
"""


def _floor_of(package: str) -> int:
    top = package.split(".")[0]
    return next(level for level, names in enumerate(FLOORS) if top in names)


def _loaded_by(package: str) -> set[str]:
    """The `autopilot_sync` packages a fresh interpreter holds after importing every module of `package`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AUTOPILOT_SYNC_")}
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, package], capture_output=True, text=True, timeout=240, env=env, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return set(result.stdout.split()) - {package.split(".")[0]}


def _forbidden(package: str, loaded: set[str]) -> set[str]:
    floor = _floor_of(package)
    upward = {name for name in loaded if _floor_of(name) >= floor}
    never = NEVER_LOADS.get(package, frozenset()) & loaded
    return {name for name in upward | never if (package.split(".")[0], name) not in KNOWN_VIOLATIONS}


def test_every_package_has_a_floor() -> None:
    on_disk = {p.name for p in SRC.iterdir() if (p / "__init__.py").exists()}
    on_disk |= {p.stem for p in SRC.glob("*.py") if p.stem not in {"__init__", "__main__"}}
    listed = {name for names in FLOORS for name in names}
    assert on_disk == listed, f"not in FLOORS: {sorted(on_disk - listed)}; gone: {sorted(listed - on_disk)}"


@pytest.mark.parametrize("package", [*(name for names in FLOORS for name in names), *NEVER_LOADS])
def test_a_package_loads_only_lower_floors(package: str) -> None:
    loaded = _loaded_by(package)
    assert not _forbidden(package, loaded), (
        f"importing autopilot_sync.{package} loads {sorted(_forbidden(package, loaded))} "
        f"(floor {_floor_of(package)}; it loaded {sorted(loaded)})"
    )


@pytest.mark.parametrize(("importer", "imported"), list(KNOWN_VIOLATIONS))
def test_known_violations_are_still_real(importer: str, imported: str) -> None:
    assert imported in _loaded_by(importer), f"{importer} no longer loads {imported}: delete the KNOWN_VIOLATIONS entry"


def test_the_docs_show_the_same_floors() -> None:
    doc = (SRC.parents[1] / "docs" / "architecture.md").read_text()
    section = doc.split("## Floors and import direction", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \|", section, flags=re.M)
    documented = tuple(tuple(re.findall(r"`(\w+)(?:/|\.py)?`", names)) for _, names in rows)
    assert documented == FLOORS


def test_importing_the_sync_module_reads_no_settings() -> None:
    """Importing reads no environment: a stray `AUTOPILOT_SYNC_MODULE_*` variable does not stop an importer."""
    env = {**os.environ, "AUTOPILOT_SYNC_MODULE_MAX_KIND_BYTES": "lots"}
    code = "import autopilot_sync.module, autopilot_sync.client, autopilot_sync.verification.checker"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
