"""The one `autopilot-sync` command line; each service adds its subcommand here."""

from __future__ import annotations

import click

from autopilot_sync import __version__
from autopilot_sync.cli_errors import FriendlyGroup


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


def _register() -> None:
    """Attach every subcommand; imported lazily so `--help` stays fast and import cycles stay impossible."""
    from autopilot_sync.client.cli import client
    from autopilot_sync.control.cli import control
    from autopilot_sync.dbcli.call import call
    from autopilot_sync.dbcli.logs import logs
    from autopilot_sync.dbcli.server import server
    from autopilot_sync.dbcli.sql import sql
    from autopilot_sync.dbcli.subscribe import subscribe
    from autopilot_sync.dbcli.token import token
    from autopilot_sync.desktop.cli import desktop
    from autopilot_sync.devtools.up import up
    from autopilot_sync.exporter.cli import exporter
    from autopilot_sync.gate.cli import gate
    from autopilot_sync.host.cli import host
    from autopilot_sync.ops.cli import compliance, module_group
    from autopilot_sync.ops.publish_cli import delete, publish
    from autopilot_sync.runtime.cli import runtime
    from autopilot_sync.settings.cli import config
    from autopilot_sync.tsbuild.cli import build
    from autopilot_sync.verification.cli import chaos, verify_stream

    main.add_command(gate)
    main.add_command(config)
    main.add_command(desktop)
    main.add_command(host)
    main.add_command(client)
    main.add_command(control)
    main.add_command(runtime)
    main.add_command(exporter)
    main.add_command(chaos)
    main.add_command(verify_stream)
    main.add_command(module_group)
    main.add_command(compliance)
    main.add_command(publish)
    main.add_command(delete)
    main.add_command(up)
    main.add_command(build)
    main.add_command(bench)  # bench/suite.py: the comparative benchmark (docs/performance.md)
    main.add_command(server)  # dbcli/: the commands shaped after the `spacetime` CLI (docs/operations.md)
    main.add_command(token)
    main.add_command(sql)
    main.add_command(call)
    main.add_command(subscribe)
    main.add_command(logs)


_register()
