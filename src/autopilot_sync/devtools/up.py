"""`autopilot-sync up`: the whole system on this machine, each service a real process on a real port.

Starts the embedded host, control, the runtime and its demo workload, then the desktop in the foreground (the
Textual UI on a terminal, JSON lines otherwise). Keys are created on first run under the state directory, and control
runs with a policy written for them (the runtime publishes on `runtime.*`, the demo users read there; the runtime
makes the demo users readers of its streams), so the quick start needs no configuration at all.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import click

from autopilot_sync.devtools.processes import ServiceProcess, ServiceStartError, port_is_free, start_service
from autopilot_sync.devtools.stack import MODULE, LocalStack


def _say(message: str) -> None:
    click.echo(f"[up] {message}", err=True)


@click.command("up")
@click.option("--state-dir", default="./var", show_default=True, help="Where every service keeps its data and keys.")
@click.option("--host-port", default=3000, show_default=True, help="Port of the Spacetime host.")
@click.option("--control-port", default=3100, show_default=True, help="Port of the control service.")
@click.option("--runtime-port", default=3200, show_default=True, help="Port of the runtime's producer API.")
@click.option("--exporter-port", default=3400, show_default=True, help="Port of the sync metrics exporter.")
@click.option("--rate", default=5.0, show_default=True, help="Demo events per second (the demo runs until stopped).")
@click.option("--headless", is_flag=True, help="Desktop prints JSON lines instead of the terminal UI.")
@click.option("--duration", type=float, default=None, help="Stop everything after this many seconds.")
@click.option(
    "--module",
    default=MODULE,
    show_default=True,
    help="What the host serves: the Python sync module, or a built TypeScript sync module PATH.js "
    "(e.g. the twin in modules/autopilot-sync, built with `npm run build` there).",
)
def up(
    state_dir: str,
    host_port: int,
    control_port: int,
    runtime_port: int,
    exporter_port: int,
    rate: float,
    headless: bool,
    duration: float | None,
    module: str,
) -> None:
    """Run host, control, runtime (with a demo workload) and the desktop locally, until Ctrl-C.

    \b
    Example:
      autopilot-sync up                      # terminal UI with live presence and events
      autopilot-sync up --headless --rate 20 # JSON lines, e.g. piped into jq
      autopilot-sync up --module modules/autopilot-sync/dist/autopilot-sync.js  # the TypeScript twin
    """
    for port, flag, service in (
        (host_port, "--host-port", "the host"),
        (control_port, "--control-port", "control"),
        (runtime_port, "--runtime-port", "the runtime"),
        (exporter_port, "--exporter-port", "the exporter"),
    ):
        if not port_is_free(port):
            raise click.ClickException(f"port {port} (for {service}) is already in use: choose another with {flag}")
    if module.endswith((".js", ".mjs")):
        module = str(Path(module).resolve())
    stack = LocalStack(
        Path(state_dir).resolve(), host_port, control_port, runtime_port, exporter_port, policy=True, module=module
    )
    demo: ServiceProcess | None = None
    try:
        _say(f"starting host on {stack.host_url} serving {module} (data in {stack.root / 'host'})")
        stack.start_host()
        _say(f"starting control on {stack.control_url}")
        stack.start_control()
        _say(f"naming control ({stack.control_url}) the sync module's trusted token issuer")
        stack.trust_control()
        _say(f"starting runtime on {stack.runtime_url} (publishing as {stack.producer_key.public_key().npub})")
        stack.start_runtime()
        _say(f"starting the sync metrics exporter on {stack.exporter_url}")
        owner_key = stack.root / "owner" / "nostr.key"
        _say(f"the database owner's key (module logs: `autopilot-sync logs --key-file`) is {owner_key}")
        stack.start_exporter()
        _say(f"starting the demo workload at {rate:g} events/s (until stopped)")
        demo_args = ["demo", "--url", stack.runtime_url, "--socket", str(stack.producer_socket)]
        demo_args += ["--rate", str(rate), "--runs", "0", "--duration", "0"]
        demo = start_service("runtime", demo_args, wait=False)
        interactive = not headless and sys.stdin.isatty() and sys.stdout.isatty()
        args = [sys.executable, "-m", "autopilot_sync", "desktop"] + ([] if interactive else ["--headless"])
        _say("starting the desktop" + ("" if interactive else " (headless: one JSON line per state change)"))
        _say(
            "metrics: "
            + ", ".join(
                f"{url}/metrics" for url in (stack.host_url, stack.control_url, stack.runtime_url, stack.exporter_url)
            )
        )
        desktop = subprocess.Popen(args, env={**os.environ, **stack.desktop_env(stack.root / "desktop")})
        try:
            desktop.wait(timeout=duration)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            desktop.terminate()
            desktop.wait(10)
    except ServiceStartError as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        said = f" (it said: {lines[-1].strip()})" if len(lines) > 1 else ""
        raise click.ClickException(f"a service did not start: {lines[0] if lines else exc}{said}") from exc
    except KeyboardInterrupt:
        pass
    finally:
        _say("stopping")
        started = time.monotonic()
        if demo is not None:
            demo.stop(timeout=5)
        stack.stop_all()
        _say(f"stopped in {time.monotonic() - started:.1f}s")
