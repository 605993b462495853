"""A TypeScript module project on disk, checked before anything runs: what is missing is one line saying what to do.

A build that started `tsc` from a half-installed `node_modules` would fail with a resolver trace that hides the cause,
so the project is checked first: `package.json`, `src/index.ts`, and the three packages the build uses installed at
the exact versions `package.json` pins (a stale `node_modules` after a lockfile change is the common case).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

#: Packages the build runs or bundles; each must be installed, at the pinned version when the pin is exact.
TOOLCHAIN = ("typescript", "esbuild", "spacetimedb")

#: The entry point `spacetime build` bundles (`./src/index.ts` in its JavaScript build task).
ENTRY = Path("src") / "index.ts"

_MAX_PACKAGE_JSON_BYTES = 1 << 20


class BuildError(Exception):
    """A build that cannot go on; the message is one line that says what to do (the CLI prints it, no traceback)."""


class CompilerError(BuildError):
    """`tsc` or `esbuild` refused the project; `diagnostics` holds the tool's own messages, printed before the line."""

    def __init__(self, message: str, diagnostics: str) -> None:
        super().__init__(message)
        self.diagnostics = diagnostics


@dataclass(frozen=True, slots=True)
class ModuleProject:
    """A checked project: its directory, the `node` that runs its tools, and the tool versions it installed."""

    root: Path
    node: str
    versions: dict[str, str]

    @property
    def entry(self) -> Path:
        """The module's entry point (`src/index.ts`)."""
        return self.root / ENTRY

    def tool(self, name: str) -> Path:
        """The project's own `node_modules/.bin/<name>` (`tsc`, `esbuild`): the versions its lockfile pins."""
        return self.root / "node_modules" / ".bin" / name

    @classmethod
    def open(cls, root: Path) -> ModuleProject:
        """Check `root` is a module project with its packages installed; raise `BuildError` naming the fix."""
        root = root.resolve()
        if not root.is_dir():
            raise BuildError(f"{root} is not a directory: pass the module project with --project-path")
        manifest = root / "package.json"
        if not manifest.is_file():
            raise BuildError(f"{root} has no package.json: pass a module project directory with --project-path")
        pins = _pinned(manifest)
        if not (root / ENTRY).is_file():
            raise BuildError(f"{root} has no {ENTRY}: a module project's entry point is {ENTRY}")
        node = shutil.which("node")
        if node is None:
            raise BuildError("node is not installed: install Node.js 20 or newer (./dev test installs it)")
        versions = {}
        for package in TOOLCHAIN:
            if package not in pins:
                raise BuildError(f"{manifest} does not depend on {package}: add it (see modules/chat/package.json)")
            installed = _installed_version(root, package)
            if installed is None:
                raise BuildError(f"{package} is not installed in {root}/node_modules: run `npm ci` in {root}")
            if _is_exact(pins[package]) and installed != pins[package]:
                raise BuildError(
                    f"{root}/node_modules has {package} {installed} but package.json pins {pins[package]}: "
                    f"run `npm ci` in {root}"
                )
            versions[package] = installed
        for tool in ("tsc", "esbuild"):
            if not (root / "node_modules" / ".bin" / tool).is_file():
                raise BuildError(f"{root}/node_modules/.bin/{tool} is missing: run `npm ci` in {root}")
        return cls(root=root, node=node, versions=versions)


def _pinned(manifest: Path) -> dict[str, str]:
    """The dependencies and devDependencies of `package.json`, name to version spec."""
    if manifest.stat().st_size > _MAX_PACKAGE_JSON_BYTES:
        raise BuildError(f"{manifest} is larger than 1 MiB: not a module project's package.json")
    try:
        document = json.loads(manifest.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BuildError(f"{manifest} is not valid JSON ({exc}): fix it") from None
    if not isinstance(document, dict):
        raise BuildError(f"{manifest} is not a JSON object: fix it")
    pins: dict[str, str] = {}
    for section in ("dependencies", "devDependencies"):
        entries = document.get(section, {})
        if isinstance(entries, dict):
            pins.update({str(name): str(spec) for name, spec in entries.items()})
    return pins


def _installed_version(root: Path, package: str) -> str | None:
    """The version in `node_modules/<package>/package.json`, or None when it is not (properly) installed."""
    try:
        document = json.loads((root / "node_modules" / package / "package.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    version = document.get("version") if isinstance(document, dict) else None
    return version if isinstance(version, str) else None


def _is_exact(spec: str) -> bool:
    """Whether a package.json version spec names one version (`2.10.1`), not a range (`^2.10.1`, `latest`)."""
    parts = spec.split("-", 1)[0].split(".")
    return len(parts) == 3 and all(part.isdigit() for part in parts)
