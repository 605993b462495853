"""Type-check with the project's `tsc`, bundle with its `esbuild`, check the artifact, then put it in place.

The bundle flags are the project's toolchain decision (docs/adr/0003): one ES module (`--format=esm`), no Node or
browser shims (`--platform=neutral`, packages resolved through `module` then `main`), lowered to ES2022 so Node 20
can run it, and `spacetime:sys@*` left external. esbuild writes to a temporary file beside `--out` that is renamed
only once the artifact check passes, so a failed build never leaves a half-built or unchecked module behind.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autopilot_sync.tsbuild.artifact import ArtifactError, check_artifact
from autopilot_sync.tsbuild.project import ENTRY, BuildError, CompilerError, ModuleProject

#: Each tool gets this long; a type check of a module project takes seconds, so this only stops a hung tool.
TOOL_TIMEOUT_S = 300.0

#: `spacetime build`'s output file for a JavaScript module, relative to the project (its `build_javascript` task).
DEFAULT_OUT = Path("dist") / "bundle.js"

ESBUILD_FLAGS = (
    "--bundle",
    "--format=esm",
    "--platform=neutral",
    "--main-fields=module,main",
    "--target=es2022",
    "--external:spacetime:sys@*",
    "--log-level=warning",
)


@dataclass(frozen=True, slots=True)
class BuildResult:
    """A finished build: where the module is, how big it is, which syscall modules it imports, tool warnings."""

    out: Path
    size: int
    imports: tuple[str, ...]
    warnings: str = ""


def build_module(
    project: ModuleProject, out: Path, progress: Callable[[str], None] = lambda _line: None
) -> BuildResult:
    """Build `project` into `out`; raise `BuildError` (or `CompilerError` with the tool's messages) on failure."""
    out = out.resolve()
    if out.is_dir():
        raise BuildError(f"{out} is a directory: --out names the module file to write, e.g. dist/bundle.js")
    progress(f"type-checking {project.root} with tsc {project.versions['typescript']}")
    checked = _run(project, [str(project.tool("tsc")), "-p", str(project.root), "--noEmit", "--pretty", "false"])
    if checked.returncode != 0:
        errors = sum(" error TS" in line for line in checked.stdout.splitlines())
        raise CompilerError(
            f"type check failed ({errors or 'see above'} error{'' if errors == 1 else 's'}): fix them and build again",
            _joined(checked),
        )
    progress(f"bundling {ENTRY} with esbuild {project.versions['esbuild']}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BuildError(f"cannot create {out.parent} ({exc.strerror}): choose another --out") from None
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        bundled = _run(project, [str(project.tool("esbuild")), str(ENTRY), *ESBUILD_FLAGS, f"--outfile={partial}"])
        if bundled.returncode != 0:
            raise CompilerError("bundling failed: fix the errors above and build again", _joined(bundled))
        try:
            imports = check_artifact(partial.read_text(encoding="utf-8", errors="replace"))
        except ArtifactError as exc:
            raise BuildError(f"the bundle is not a loadable module: {exc}") from None
        size = partial.stat().st_size
        try:
            os.replace(partial, out)
        except OSError as exc:
            raise BuildError(f"cannot write {out} ({exc.strerror}): choose another --out") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    progress(f"built {out} ({_size(size)}), importing {', '.join(imports)}")
    return BuildResult(out=out, size=size, imports=imports, warnings=bundled.stderr.strip())


def _run(project: ModuleProject, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run one of the project's tools in the project directory, bounded in time, output captured."""
    name = Path(argv[0]).name
    try:
        return subprocess.run(
            argv, cwd=project.root, capture_output=True, text=True, errors="replace", timeout=TOOL_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise BuildError(
            f"{name} did not finish within {TOOL_TIMEOUT_S:.0f} s: run it by hand in {project.root}"
        ) from None
    except OSError as exc:
        raise BuildError(f"cannot run {argv[0]} ({exc.strerror}): run `npm ci` in {project.root}") from None


def _joined(done: subprocess.CompletedProcess[str]) -> str:
    return "\n".join(part.strip() for part in (done.stdout, done.stderr) if part.strip())


def _size(size: int) -> str:
    return f"{size / 1024:.1f} KiB" if size >= 1024 else f"{size} bytes"
