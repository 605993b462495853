"""The one `autopilot-sync` command line; each service adds its subcommand here."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import click

from autopilot_sync import __version__
from autopilot_sync.cli_errors import REMEDIES_KEY, Remedies, one_line

#: Every subcommand by name: `module:attribute` of its click command, imported only when that command runs (or when
#: `--help` lists them all). Importing all of them cost `autopilot-sync host` about 1 s of CPU at every start (the
#: client SDK, control, verification and their libraries); docs/performance.md "Round 3 — start-up".
SUBCOMMANDS: dict[str, str] = {
    "gate": "autopilot_sync.gate.cli:gate",
    "config": "autopilot_sync.settings.cli:config",
    "desktop": "autopilot_sync.desktop.cli:desktop",
    "host": "autopilot_sync.host.cli:host",
    "client": "autopilot_sync.client.cli:client",
    "control": "autopilot_sync.control.cli:control",
    "runtime": "autopilot_sync.runtime.cli:runtime",
    "exporter": "autopilot_sync.exporter.cli:exporter",
    "chaos": "autopilot_sync.verification.cli:chaos",
    "verify-stream": "autopilot_sync.verification.cli:verify_stream",
    "module": "autopilot_sync.ops.cli:module_group",
    "compliance": "autopilot_sync.ops.cli:compliance",
    "publish": "autopilot_sync.ops.publish_cli:publish",
    "delete": "autopilot_sync.ops.publish_cli:delete",
    "up": "autopilot_sync.devtools.up:up",
    "build": "autopilot_sync.tsbuild.cli:build",
    # dbcli/: the commands shaped after the `spacetime` CLI (docs/operations.md)
    "server": "autopilot_sync.dbcli.server:server",
    "token": "autopilot_sync.dbcli.token:token",
    "sql": "autopilot_sync.dbcli.sql:sql",
    "call": "autopilot_sync.dbcli.call:call",
    "subscribe": "autopilot_sync.dbcli.subscribe:subscribe",
    "logs": "autopilot_sync.dbcli.logs:logs",
}


class FriendlyGroup(click.Group):
    """A click group whose subcommands' user-fixable failures end as one line (see `cli_errors`' docstring)."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; translate the failures `one_line` knows, re-raise the rest untouched."""
        try:
            return super().invoke(ctx)
        except click.exceptions.ClickException:
            raise
        except Exception as exc:
            line = one_line(exc, ctx.meta.get(REMEDIES_KEY, Remedies()))
            if line is None:
                raise
            raise click.ClickException(line) from None


class LazyGroup(FriendlyGroup):
    """A group whose subcommands are imported when one is run or listed (click's documented lazy-loading pattern).

    Why: each subcommand imports its service (aiohttp, pydantic, the client SDK, cryptography ...); a service start
    must pay only for its own. `lazy` maps a command name to `module:attribute` of its click command.
    """

    def __init__(self, *args: Any, lazy: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every name, eager and lazy, sorted as click sorts them (so `--help` reads as before)."""
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command `cmd_name`, importing its module the first time it is asked for."""
        target = self.lazy.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command) or command.name != cmd_name:
            raise TypeError(f"{target} is not the click command {cmd_name!r}")
        return command


@click.group(cls=LazyGroup, lazy=SUBCOMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="autopilot-sync")
def main() -> None:
    """Spacetime-only real-time sync: host, control, runtime and desktop in one command.

    \b
    Example:
      autopilot-sync up          # run everything locally
      autopilot-sync gate check  # fail on legacy transport symbols
    """


@click.command(
    "bench", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False}, add_help_option=False
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: tuple[str, ...]) -> None:
    """Compare with NATS JetStream and Redis Streams (`python -m bench` of the checkout; `--help` lists its flags).

    \b
    Example:
      scripts/bench-setup.sh && autopilot-sync bench --quick --out /tmp/bench
    """
    import os
    import subprocess
    import sys
    from pathlib import Path

    from autopilot_sync.checkout import NotACheckout, source_checkout
    from autopilot_sync.gate.files import find_root

    # bench/ lives beside src/, outside the wheel: the checkout we run from, else the one around the current directory
    found = [
        root for root in (source_checkout(), find_root(Path.cwd())) if root and (root / "bench/__main__.py").is_file()
    ]
    if not found:
        raise NotACheckout(
            "bench is a repository tool (bench/ is not installed): run it inside a checkout of autopilot-sync"
        )
    checkout = str(found[0])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [checkout, os.environ.get("PYTHONPATH")]))}
    raise SystemExit(subprocess.call([sys.executable, "-m", "bench", *args], env=env))


main.add_command(bench)  # bench/suite.py: the comparative benchmark (docs/performance.md)
