"""Building the sync module's TypeScript twin (`modules/autopilot-sync/`) for tests, as `spacetime build` would.

`npm ci` from the committed lockfile when the packages are missing or older than the lockfile, then the build
`autopilot-sync build` runs (`tsbuild.build_module`: `tsc --noEmit`, esbuild into one ES-module file that keeps its
`spacetime:sys@…` imports, the artifact checked). A build is cached by a hash of everything it reads, under
pytest's temporary root (shared by sessions), one build at a time, written atomically by the builder.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
from pathlib import Path

from autopilot_sync.tsbuild.build import build_module
from autopilot_sync.tsbuild.project import ModuleProject

ROOT = Path(__file__).resolve().parents[1]
TWIN_DIR = ROOT / "modules" / "autopilot-sync"
_INPUTS = ("package.json", "package-lock.json", "tsconfig.json")


def source_hash(project: Path = TWIN_DIR) -> str:
    """A hash of the project's manifest, lockfile, tsconfig and every TypeScript source, by relative path."""
    digest = hashlib.sha256()
    files = [project / name for name in _INPUTS] + sorted((project / "src").rglob("*.ts"))
    for path in files:
        digest.update(str(path.relative_to(project)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _run(argv: list[str], cwd: Path) -> None:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


def ensure_installed(project: Path = TWIN_DIR) -> None:
    """`npm ci` when the pinned packages are missing or the lockfile changed since they were installed."""
    marker = project / "node_modules" / ".package-lock.json"
    if marker.is_file() and marker.stat().st_mtime >= (project / "package-lock.json").stat().st_mtime:
        return
    _run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], project)


def build_twin(cache_dir: Path, project: Path = TWIN_DIR) -> Path:
    """The built module file for the project's current sources (built once per source hash, then reused)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    out = cache_dir / f"autopilot-sync-{source_hash(project)}.js"
    with (cache_dir / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time across workers and sessions
        if out.is_file():
            return out
        ensure_installed(project)
        build_module(ModuleProject.open(project), out)  # what `autopilot-sync build` runs: tsc, esbuild, checks
    return out


def node_available() -> bool:
    """Whether `node` and `npm` are on PATH (./dev test installs them; the build needs both)."""
    return shutil.which("node") is not None and shutil.which("npm") is not None
