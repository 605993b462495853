"""Start the embedded host from its command-line options: settings, the data directory's lock, then serve.

Why a module of its own, without click: `autopilot-sync host` is what `./dev up`, the tests and the benchmark start,
and click (with `inspect`, `uuid`, its types) was ~0.05 s of the host's ~0.7 s to `ready` (docs/performance.md
"Round 7 — startup4"). `autopilot_sync.launch` parses the host's options itself and calls `run_host`; the click
command (`host/cli.py`, what `--help`, the CLI docs and every other path see) calls the same function.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from autopilot_sync.cli_errors import Remedies, check_can_listen
from autopilot_sync.partial_package import import_without_init
from autopilot_sync.settings.host import HostSettings
from autopilot_sync.settings.load import load_settings
from autopilot_sync.statedir import lock_or_exit


class HostOptions(NamedTuple):
    """The host subcommand's flags (None: the environment's value, else the default)."""

    listen: str | None = None
    data_dir: str | None = None
    database: str | None = None
    module_path: str | None = None
    log_level: str = "INFO"


def host_remedies() -> Remedies:
    """What the user should change when the host's usual failures happen (a busy listen address)."""
    return Remedies(listen=f"--listen or {HostSettings.env_prefix()}LISTEN")


def run_host(options: HostOptions) -> None:
    """Run the host until SIGINT/SIGTERM; a module that fails to load raises `host.server.ModuleLoadError`."""
    with imports_out_of_the_collectors_view():
        settings = _settings(options)
        # Held until the process exits: a second host on this directory exits 2 naming this one's PID.
        lock_or_exit(Path(settings.data_dir), "host data directory", "host")
        check_can_listen(settings.listen.host, settings.listen.port)  # before recovery, which may take a while
        from autopilot_sync.auth.aiohttp_client import import_aiohttp_server_only

        import_aiohttp_server_only()  # before anything imports aiohttp: its client loads with the first client request
        # The metric classes without the text exposition (`http.server`, `wsgiref`, ...): it loads with the first
        # scrape or the warm-up after ready (`host/warm.py`).
        import_without_init("prometheus_client", ("registry", "metrics", "metrics_core"))
        from autopilot_sync.host.server import serve_forever

        loop_factory = _loop_factory()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve_forever(settings))


def module_load_failure(exc: BaseException) -> str | None:
    """The one line for a module that failed to load (`host.server.ModuleLoadError`), else None.

    Read from `sys.modules`, not imported: such an error exists only once the server module is loaded, and importing
    it here first would load aiohttp whole, before `run_host` loads its server alone.
    """
    server = sys.modules.get("autopilot_sync.host.server")
    if server is not None and isinstance(exc, server.ModuleLoadError):
        return str(exc)
    return None


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


def _settings(options: HostOptions) -> HostSettings:
    """The host's settings: flags over the environment, validated (exit 2 naming every bad variable)."""
    overrides = {
        "LISTEN": options.listen,
        "DATA_DIR": options.data_dir,
        "DATABASE": options.database,
        "MODULE": options.module_path,
    }
    for name, value in overrides.items():
        if value is not None:
            os.environ[f"{HostSettings.env_prefix()}{name}"] = value
    logging.basicConfig(level=options.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return load_settings(HostSettings)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (a dependency off Windows), else asyncio's own.

    Why: the host's fixed cost per call is largely event-loop plumbing (frame reads, socket writes, the fsync
    thread's hand-off); on uvloop the one-subscriber publish -> receipt p50 fell ~20% and unbatched durable publish
    rose ~12% (`python -m bench.percall`, docs/performance.md).
    """
    from autopilot_sync.lifecycle import event_loop_factory  # the one copy, shared with the runtime and the bench

    return event_loop_factory()
