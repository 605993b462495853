"""`autopilot-sync build`: a SpacetimeDB TypeScript module project becomes the one ES-module file a host loads.

The toolchain is the project's own (`tsc` and `esbuild` pinned in its lockfile, installed by `npm ci`), so a build
here and a build in CI use the same compiler. The artifact is what `spacetime build` makes: one ES module whose
`spacetime:sys@…` imports are left as imports, so the same file runs on our host (`host --module FILE.js`) and can
be published to a real SpacetimeDB. Recipe and background: docs/adr/0003 and docs/modules.md.
"""

from autopilot_sync.tsbuild.artifact import ArtifactError, check_artifact
from autopilot_sync.tsbuild.build import BuildResult, build_module
from autopilot_sync.tsbuild.project import BuildError, CompilerError, ModuleProject

__all__ = [
    "ArtifactError",
    "BuildError",
    "BuildResult",
    "CompilerError",
    "ModuleProject",
    "build_module",
    "check_artifact",
]
