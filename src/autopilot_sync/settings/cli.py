"""`autopilot-sync config`: the env contract as docs, and as a check of the current environment."""

from __future__ import annotations

import difflib
from pathlib import Path

import click

from autopilot_sync.settings.docs import DOCS_PATH, render
from autopilot_sync.settings.forms import env_text
from autopilot_sync.settings.load import load_settings
from autopilot_sync.settings.registry import SERVICES, by_name

_MAX_DIFF_LINES = 40


@click.group()
def config() -> None:
    """The env contract: every service's AUTOPILOT_SYNC_* variables.

    \b
    Example:
      autopilot-sync config docs --check
      autopilot-sync config check host
    """


@config.command("docs")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path(DOCS_PATH),
    show_default=True,
    help="Markdown file to write (relative to the current directory).",
)
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if the file differs from what would be written.")
def docs(output: Path, check: bool) -> None:
    """Generate the configuration reference (a table per service) from the settings classes.

    \b
    Example:
      autopilot-sync config docs            # rewrite docs/configuration.md
      autopilot-sync config docs --check    # CI: fail when it is out of date
      autopilot-sync config docs --output /tmp/configuration.md   # outside a checkout
    """
    from autopilot_sync.checkout import NotACheckout

    given = click.get_current_context().get_parameter_source("output") is not click.core.ParameterSource.DEFAULT
    if not given and not (output.is_file() if check else output.parent.is_dir()):
        missing = output if check else output.parent
        raise NotACheckout(f"no {missing} here: run inside a checkout of autopilot-sync, or pass --output FILE")
    expected = render(SERVICES)
    if not check:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(expected, encoding="utf-8")
        click.echo(f"wrote {output}")
        return
    current = output.read_text(encoding="utf-8") if output.is_file() else ""
    if current == expected:
        click.echo(f"{output} is up to date")
        return
    click.echo(f"{output} is out of date; regenerate it with `autopilot-sync config docs`:", err=True)
    diff = difflib.unified_diff(
        current.splitlines(), expected.splitlines(), f"{output} (current)", f"{output} (generated)", lineterm=""
    )
    for number, line in enumerate(diff):
        if number == _MAX_DIFF_LINES:
            click.echo("...", err=True)
            break
        click.echo(line, err=True)
    raise SystemExit(1)


@config.command("check")
@click.argument("service", type=click.Choice(sorted(by_name())))
def check(service: str) -> None:
    """Validate SERVICE's variables in the current environment the way the service does at start (exit 2 if bad).

    \b
    Example:
      AUTOPILOT_SYNC_HOST_LISTEN=0.0.0.0:3000 autopilot-sync config check host
    """
    cls = by_name()[service]
    settings = load_settings(cls)
    for name in cls.fields:
        click.echo(f"{cls.env_name(name)}={env_text(getattr(settings, name))}")
