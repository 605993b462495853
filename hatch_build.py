"""Build hook: compile the C files, `spacetime/_rowlist.c` (row lists: the SDK's check, the host's packing of a
resume's rows) and `spacetime/_bsatn.c` (BSATN products: argument/row decode, row encode; the commit-log record),
each next to its source, when a C compiler is there.

Hatchling runs it for every wheel, editable installs included (`uv sync`); `python hatch_build.py` runs the same
compile by hand. The extensions only speed things up (docs/performance.md "Round 5 — catchup2", "Round 7 —
nativecodec"): without a compiler, or if a compile fails, the build goes on with a warning and the Python twins run,
with the same results; each source is compiled on its own, so one failing leaves the other. It needs the compiler
Python was built with (or `cc`) and Python's headers: what a bare Debian machine with python3-dev and gcc has.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # run as a script, outside a build
    BuildHookInterface = object  # type: ignore[assignment,misc]

SOURCES = (Path("src/autopilot_sync/spacetime/_rowlist.c"), Path("src/autopilot_sync/spacetime/_bsatn.c"))


def compile_native(root: Path) -> list[Path]:
    """Compile every extension in place; the paths of those built (a failed one's reason goes to stderr)."""
    return [built for source in SOURCES if (built := compile_one(root / source)) is not None]


def compile_one(source: Path) -> Path | None:
    """Compile one extension in place; its path, or None (with the reason on stderr) when it could not be built."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    target = source.with_name(source.stem + suffix)
    compiler = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    include = sysconfig.get_paths()["include"]
    partial = target.with_name(target.name + ".partial")
    command = [*compiler, "-O2", "-shared", "-fPIC", f"-I{include}", str(source), "-o", str(partial)]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        print(f"autopilot-sync: spacetime/{source.name} not built ({detail.strip()}); Python runs", file=sys.stderr)
        partial.unlink(missing_ok=True)
        return None
    partial.replace(target)
    return target


class NativeBuildHook(BuildHookInterface):  # type: ignore[misc]
    """Hatchling's hook: the extension compiled before a wheel (or an editable install) is assembled."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        built = compile_native(Path(self.root))
        if built and version != "editable":
            build_data["pure_python"] = False
            build_data["infer_tag"] = True
            for path in built:
                build_data["force_include"][str(path)] = str(path.relative_to(Path(self.root) / "src"))


if __name__ == "__main__":
    sys.exit(0 if len(compile_native(Path(__file__).resolve().parent)) == len(SOURCES) else 1)
