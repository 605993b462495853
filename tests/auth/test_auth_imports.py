"""The shared auth package imports one way (`oidc`/`claims` → `errors`): no module imports in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import autopilot_sync.auth as auth_package
import autopilot_sync.host.auth as host_auth_package

PACKAGE = "autopilot_sync.auth"


def _auth_imports(path: Path) -> set[str]:
    """Sibling modules of the auth package that `path` imports (at any level, including under TYPE_CHECKING)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE + "."):
            found.add(node.module.removeprefix(PACKAGE + "."))
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix(PACKAGE + ".") for a in node.names if a.name.startswith(PACKAGE + "."))
    return found


def test_auth_modules_import_each_other_without_a_cycle() -> None:
    folder = Path(auth_package.__file__).parent
    graph = {p.stem: _auth_imports(p) for p in folder.glob("*.py") if p.stem != "__init__"}
    assert {"oidc", "claims", "errors"} <= graph.keys()
    assert graph["errors"] == set()
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import cycle: {' -> '.join((*path, name))}"
        if name in done:
            return
        for imported in graph.get(name, set()):
            visit(imported, (*path, name))
        done.add(name)

    for name in graph:
        visit(name, ())


def test_the_old_auth_module_paths_are_gone() -> None:
    host = Path(host_auth_package.__file__).parent.parent
    assert not (host / "tokens.py").exists() and not (host / "oidc.py").exists()
    # host/auth: the host's token signing (`tokens`) and its key file's form (`keyfile`); the claim rules live in auth/
    assert {p.stem for p in (host / "auth").glob("*.py")} == {"__init__", "keyfile", "tokens"}
