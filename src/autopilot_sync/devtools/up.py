"""`autopilot-sync up`: the whole system on this machine, each service a real process on a real port.

Starts the embedded host, control, the runtime and its demo workload, then the desktop in the foreground (the
Textual UI on a terminal, JSON lines otherwise). Keys are created on first run under the state directory, and the
runtime's key is put on control's append allowlist, so the quick start needs no configuration at all.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import click

from autopilot_sync.devtools.processes import ServiceProcess, ServiceStartError, start_host, start_service
from autopilot_sync.nostr.keyfile import load_secret_key, save_secret_key
from autopilot_sync.nostr.keys import SecretKey


@dataclass
class Stack:
    """The started children, stopped in reverse order."""

    children: list[ServiceProcess] = field(default_factory=list)

    def add(self, child: ServiceProcess) -> ServiceProcess:
        self.children.append(child)
        return child

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop(timeout=5)


def _runtime_key(path: Path) -> SecretKey:
    if path.exists():
        return load_secret_key(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = SecretKey.generate()
    save_secret_key(path, key)
    return key


def _say(message: str) -> None:
    click.echo(f"[up] {message}", err=True)


@click.command("up")
@click.option("--state-dir", default="./var", show_default=True, help="Where every service keeps its data and keys.")
@click.option("--host-port", default=3000, show_default=True, help="Port of the Spacetime host.")
@click.option("--control-port", default=3100, show_default=True, help="Port of the control service.")
@click.option("--runtime-port", default=3200, show_default=True, help="Port of the runtime's producer API.")
@click.option("--rate", default=5.0, show_default=True, help="Demo events per second.")
@click.option("--headless", is_flag=True, help="Desktop prints JSON lines instead of the terminal UI.")
@click.option("--duration", type=float, default=None, help="Stop everything after this many seconds.")
def up(
    state_dir: str,
    host_port: int,
    control_port: int,
    runtime_port: int,
    rate: float,
    headless: bool,
    duration: float | None,
) -> None:
    """Run host, control, runtime (with a demo workload) and the desktop locally, until Ctrl-C.

    \b
    Example:
      autopilot-sync up                      # terminal UI with live presence and events
      autopilot-sync up --headless --rate 20 # JSON lines, e.g. piped into jq
    """
    root = Path(state_dir).resolve()
    host_url = f"http://127.0.0.1:{host_port}"
    control_url = f"http://127.0.0.1:{control_port}"
    runtime_url = f"http://127.0.0.1:{runtime_port}"
    producer = _runtime_key(root / "runtime" / "nostr.key")
    stack = Stack()
    try:
        _say(f"starting host on {host_url} (data in {root / 'host'})")
        stack.add(start_host(root / "host", port=host_port, env={"AUTOPILOT_SYNC_HOST_TRUSTED_ISSUERS": control_url}))
        _say(f"starting control on {control_url}")
        stack.add(
            start_service(
                "control",
                env={
                    "AUTOPILOT_SYNC_CONTROL_LISTEN": f"127.0.0.1:{control_port}",
                    "AUTOPILOT_SYNC_CONTROL_PUBLIC_URL": control_url,
                    "AUTOPILOT_SYNC_CONTROL_SIGNING_KEY_PATH": str(root / "control" / "signing.pem"),
                    "AUTOPILOT_SYNC_CONTROL_SPACETIME_BASE_URL": host_url,
                    "AUTOPILOT_SYNC_CONTROL_APPEND_ALLOWLIST": producer.public_key().hex,
                },
            )
        )
        _say(f"starting runtime on {runtime_url} (publishing as {producer.public_key().npub})")
        stack.add(
            start_service(
                "runtime",
                env={
                    "AUTOPILOT_SYNC_RUNTIME_LISTEN": f"127.0.0.1:{runtime_port}",
                    "AUTOPILOT_SYNC_RUNTIME_DATA_DIR": str(root / "runtime"),
                    "AUTOPILOT_SYNC_RUNTIME_CONTROL_URL": control_url,
                    "AUTOPILOT_SYNC_RUNTIME_SPACETIME_BASE_URL": host_url,
                    "AUTOPILOT_SYNC_RUNTIME_NOSTR_KEY_PATH": str(root / "runtime" / "nostr.key"),
                },
            )
        )
        demo_seconds = duration if duration is not None else 24 * 3600.0
        _say(f"starting the demo workload at {rate:g} events/s")
        stack.add(
            start_service(
                "runtime",
                ["demo", "--url", runtime_url, "--rate", str(rate), "--duration", str(demo_seconds)],
                wait=False,
            )
        )
        desktop_env = {
            **os.environ,
            "AUTOPILOT_SYNC_DESKTOP_CONFIG_DIR": str(root / "desktop"),
            "AUTOPILOT_SYNC_DESKTOP_CONTROL_URL": control_url,
            "AUTOPILOT_SYNC_DESKTOP_SPACETIME_BASE_URL": host_url,
        }
        interactive = not headless and sys.stdin.isatty() and sys.stdout.isatty()
        args = [sys.executable, "-m", "autopilot_sync", "desktop"] + ([] if interactive else ["--headless"])
        _say("starting the desktop" + ("" if interactive else " (headless: one JSON line per state change)"))
        _say("metrics: " + ", ".join(f"{u}/metrics" for u in (host_url, control_url, runtime_url)))
        desktop = subprocess.Popen(args, env=desktop_env)
        try:
            desktop.wait(timeout=duration)
        except subprocess.TimeoutExpired:
            desktop.terminate()
            desktop.wait(10)
        except KeyboardInterrupt:
            desktop.terminate()
            desktop.wait(10)
    except ServiceStartError as exc:
        raise click.ClickException(f"a service did not start: {exc}") from exc
    except KeyboardInterrupt:
        pass
    finally:
        _say("stopping")
        started = time.monotonic()
        stack.stop()
        _say(f"stopped in {time.monotonic() - started:.1f}s")
