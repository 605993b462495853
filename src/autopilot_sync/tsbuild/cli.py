"""`autopilot-sync build`: the command a SpacetimeDB user knows as `spacetime build`, for TypeScript modules."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("build")
@click.option(
    "--project-path",
    "-p",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The module project: package.json, src/index.ts, and node_modules installed by `npm ci`.",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The module file to write (default: dist/bundle.js in the project, where `spacetime build` puts it).",
)
def build(project_path: Path, out: Path | None) -> None:
    """Build a TypeScript module project into one ES-module file a host loads (`host --module FILE.js`).

    Type-checks with the project's own `tsc -p DIR --noEmit`, bundles src/index.ts with its own `esbuild`
    (the `spacetime:sys@*` imports stay imports, as in `spacetime build` output, so the same file can be
    published to SpacetimeDB), checks the result, and prints its size. A type error prints the compiler's
    messages and exits 1. See docs/modules.md.

    \b
    Example:
      (cd modules/chat && npm ci)
      autopilot-sync build --project-path modules/chat --out /tmp/chat.js
      autopilot-sync host --module /tmp/chat.js
    """
    from autopilot_sync.tsbuild.build import DEFAULT_OUT, build_module
    from autopilot_sync.tsbuild.project import BuildError, CompilerError, ModuleProject

    try:
        project = ModuleProject.open(project_path)
        result = build_module(project, out if out is not None else project.root / DEFAULT_OUT, progress=click.echo)
    except CompilerError as exc:
        click.echo(exc.diagnostics, err=True)
        raise click.ClickException(str(exc)) from None
    except BuildError as exc:
        raise click.ClickException(str(exc)) from None
    if result.warnings:
        click.echo(result.warnings, err=True)
