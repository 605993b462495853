"""`autopilot-sync host`: run the embedded Spacetime host.

The options, help and error texts live here (what `--help`, the CLI docs and any unusual argument list see);
`autopilot_sync.launch` parses the common, well-formed `autopilot-sync host ...` itself without importing click, and
both run `host/start.py`'s `run_host`.
"""

from __future__ import annotations

import click

from autopilot_sync.cli_errors import declare
from autopilot_sync.host.start import HostOptions, host_remedies, module_load_failure, run_host


@click.command("host")
@click.option("--listen", help="HOST:PORT to listen on (env AUTOPILOT_SYNC_HOST_LISTEN, default 127.0.0.1:3000).")
@click.option("--data-dir", help="Commit log and snapshot directory (env AUTOPILOT_SYNC_HOST_DATA_DIR).")
@click.option("--database", help="Database name served under /v1/database/:name (env AUTOPILOT_SYNC_HOST_DATABASE).")
@click.option(
    "--module",
    "module_path",
    help="Module to run: a dotted Python path, or a built TypeScript module PATH.js/.mjs "
    "(env AUTOPILOT_SYNC_HOST_MODULE).",
)
@click.option("--log-level", default="INFO", show_default=True, help="Python logging level.")
def host(
    listen: str | None, data_dir: str | None, database: str | None, module_path: str | None, log_level: str
) -> None:
    """Run the embedded Spacetime host (HTTP API + v2/v3 WebSocket) until SIGINT/SIGTERM.

    Every setting comes from the environment (see docs/configuration.md); a flag overrides its variable.
    Prints `autopilot-sync host ready: http://...` once it accepts connections. One host per data directory: a
    second one exits 2 naming the PID that holds it. A module published over HTTP (`autopilot-sync publish`)
    replaces the running one without a restart, and is what the next start runs (docs/host-http.md "Publish").

    \b
    Example:
      autopilot-sync host --listen 127.0.0.1:3000 --data-dir ./var/host
      AUTOPILOT_SYNC_HOST_MODULE=autopilot_sync.examples.chat autopilot-sync host --database chat
      autopilot-sync host --module ./dist/chat.js --database chat
      autopilot-sync host --module "" --database chat   # no database yet: `autopilot-sync publish` creates it
    """
    declare(host_remedies())
    try:
        run_host(HostOptions(listen, data_dir, database, module_path, log_level))
    except Exception as exc:
        failure = module_load_failure(exc)
        if failure is None:
            raise
        raise click.ClickException(failure) from exc
