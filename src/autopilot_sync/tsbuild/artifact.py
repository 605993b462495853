"""What a built module must look like before it is handed to a host: checked on the text esbuild wrote.

Two promises a host relies on. The `spacetime:sys@…` imports stay imports: the host (ours through its loader hook,
SpacetimeDB's through its V8 module loader) supplies them, and a bundle that inlined or dropped them would not be a
module at all. And no `using` declaration is left: Node 20, which runs modules here, cannot parse one; the build's
`--target=es2022` lowers the library's into esbuild's helpers, and this check proves it did.
"""

from __future__ import annotations

import re

#: A static import of a SpacetimeDB syscall module, e.g. `import * as x from "spacetime:sys@2.0";`.
SYS_IMPORT = re.compile(r"""^\s*import\s[^;]*?\bfrom\s*["'](spacetime:sys@[0-9.]+)["']""", re.MULTILINE)

#: A `using` / `await using` declaration at the start of a line (esbuild writes one statement per line unminified;
#: comments start with `//` or `*`, so prose such as "using a counter" never matches).
USING_DECLARATION = re.compile(r"^[ \t]*(?:await[ \t]+)?using[ \t]+[A-Za-z_$][\w$]*[ \t]*=", re.MULTILINE)

#: The syscall module every module built on the library 2.x imports.
REQUIRED_IMPORT = "spacetime:sys@2.0"


class ArtifactError(Exception):
    """The bundle is not a module a host can load; the message says what is wrong with it."""


def check_artifact(source: str) -> tuple[str, ...]:
    """The `spacetime:sys@…` modules `source` imports, sorted; raise `ArtifactError` when a promise is broken."""
    imports = tuple(sorted(set(SYS_IMPORT.findall(source))))
    if REQUIRED_IMPORT not in imports:
        raise ArtifactError(
            f"the bundle does not import {REQUIRED_IMPORT}: the module must import from 'spacetimedb/server' "
            "and the spacetime:sys@* imports must stay external"
        )
    found = USING_DECLARATION.search(source)
    if found is not None:
        line = source.count("\n", 0, found.start()) + 1
        raise ArtifactError(f"the bundle has a `using` declaration at line {line}: Node 20 cannot run it")
    return imports
