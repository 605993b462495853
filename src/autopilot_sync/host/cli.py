"""`autopilot-sync host`: run the embedded Spacetime host."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from autopilot_sync.cli_errors import Remedies, check_can_listen, declare
from autopilot_sync.settings.host import HostSettings
from autopilot_sync.settings.load import load_settings
from autopilot_sync.statedir import lock_or_exit


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
    with imports_out_of_the_collectors_view():
        settings = _settings(listen, data_dir, database, module_path, log_level)
        # Held until the process exits: a second host on this directory exits 2 naming this one's PID.
        lock_or_exit(Path(settings.data_dir), "host data directory", "host")
        check_can_listen(settings.listen.host, settings.listen.port)  # before recovery, which may take a while
        from autopilot_sync.auth.aiohttp_client import import_aiohttp_server_only

        import_aiohttp_server_only()  # before anything imports aiohttp: its client loads with the first client request
        from autopilot_sync.host.server import ModuleLoadError, serve_forever

        loop_factory = _loop_factory()
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(serve_forever(settings))
    except ModuleLoadError as exc:
        raise click.ClickException(str(exc)) from exc


@contextmanager
def imports_out_of_the_collectors_view() -> Iterator[None]:
    """Run the start's imports with the cyclic garbage collector off, then freeze what they built out of its view.

    Why: the start creates ~100,000 objects that live as long as the process (modules, classes, functions); with
    the collector on, every young-generation pass walks the newest of them and every full pass walks them all,
    ~0.1 s of the host's ~0.9 s of CPU to `ready` (docs/performance.md "Round 5 — startup2"). Frozen objects are
    still freed by their reference counts; only a cycle among them that is already garbage is never collected (a
    bounded one-off: imports make few). Recovery and serving run with the collector on, as before.
    """
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def _settings(
    listen: str | None, data_dir: str | None, database: str | None, module_path: str | None, log_level: str
) -> HostSettings:
    """The host's settings: flags over the environment, validated (exit 2 naming every bad variable)."""
    declare(Remedies(listen=f"--listen or {HostSettings.env_prefix()}LISTEN"))
    overrides = {"LISTEN": listen, "DATA_DIR": data_dir, "DATABASE": database, "MODULE": module_path}
    for name, value in overrides.items():
        if value is not None:
            os.environ[f"{HostSettings.env_prefix()}{name}"] = value
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return load_settings(HostSettings)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (a dependency off Windows), else asyncio's own.

    Why: the host's fixed cost per call is largely event-loop plumbing (frame reads, socket writes, the fsync
    thread's hand-off); on uvloop the one-subscriber publish -> receipt p50 fell ~20% and unbatched durable publish
    rose ~12% (`python -m bench.percall`, docs/performance.md).
    """
    from autopilot_sync.lifecycle import event_loop_factory  # the one copy, shared with the runtime and the bench

    return event_loop_factory()
