"""`autopilot-sync runtime`: the producer service, its demo workload and the dead-letter operator commands."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from pathlib import Path

import click

from autopilot_sync.cli_errors import Remedies, declare
from autopilot_sync.settings.runtime import RuntimeSettings

_PREFIX = RuntimeSettings.env_prefix()
_DEFAULT_URL = "http://127.0.0.1:3200"
_socket_option = click.option(
    "--socket",
    "socket_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar=f"{_PREFIX}PRODUCER_SOCKET",
    help=f"The runtime's producer socket (env {_PREFIX}PRODUCER_SOCKET); needs no token.",
)
_token_option = click.option(
    "--token",
    envvar=f"{_PREFIX}API_TOKEN",
    help=f"Bearer token from control, used over TCP when no socket is given (env {_PREFIX}API_TOKEN).",
)


@click.group("runtime", invoke_without_command=True)
@click.option("--listen", help=f"HOST:PORT of the API and metrics (env {_PREFIX}LISTEN, default 127.0.0.1:3200).")
@click.option("--data-dir", help=f"Directory of the durable outbox (env {_PREFIX}DATA_DIR).")
@click.option("--log-level", default="INFO", show_default=True, help="Python logging level.")
@click.pass_context
def runtime(ctx: click.Context, listen: str | None, data_dir: str | None, log_level: str) -> None:
    """Run the runtime: producers append run/worker events over HTTP; an outbox publishes them to the host.

    Without a subcommand it serves until SIGINT/SIGTERM and prints `autopilot-sync runtime ready: http://...`.
    One runtime per outbox directory: a second one exits 2 naming the PID that holds it.
    Every setting comes from the environment (see docs/configuration.md); a flag overrides its variable.

    \b
    Example:
      AUTOPILOT_SYNC_RUNTIME_NOSTR_KEY_PATH=./var/runtime/nostr.key autopilot-sync runtime
      autopilot-sync runtime demo --rate 50 --runs 20
      autopilot-sync runtime dead-letters list
    """
    if ctx.invoked_subcommand is not None:
        return
    declare(Remedies(listen=f"--listen or {_PREFIX}LISTEN"))
    for name, value in {"LISTEN": listen, "DATA_DIR": data_dir}.items():
        if value is not None:
            os.environ[f"{_PREFIX}{name}"] = value
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from autopilot_sync.lifecycle import event_loop_factory
    from autopilot_sync.runtime.server import serve_forever
    from autopilot_sync.settings.load import load_settings
    from autopilot_sync.statedir import lock_or_exit

    settings = load_settings(RuntimeSettings)
    # Held until the process exits: a second runtime on this outbox exits 2 naming this one's PID.
    lock_or_exit(Path(settings.data_dir), "runtime outbox directory", "runtime")
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:  # uvloop: the SDK's CPU per call -14%
        runner.run(serve_forever(settings))


@runtime.command("pubkey")
@click.option("--key-path", type=click.Path(path_type=Path), help=f"Key file (env {_PREFIX}NOSTR_KEY_PATH).")
def pubkey(key_path: Path | None) -> None:
    """Print the runtime's Nostr public key (hex), creating the 0600 key file on first use.

    Control grants `sync.append` only to allow-listed keys: put this value in AUTOPILOT_SYNC_CONTROL_APPEND_ALLOWLIST.

    \b
    Example:
      autopilot-sync runtime pubkey --key-path ./var/runtime/nostr.key
    """
    from autopilot_sync.runtime.tokens import load_or_create_key

    path = key_path or os.environ.get(f"{_PREFIX}NOSTR_KEY_PATH")
    if not path:
        raise click.UsageError(f"give --key-path or set {_PREFIX}NOSTR_KEY_PATH")
    click.echo(load_or_create_key(Path(path).expanduser()).public_key().hex)


@runtime.command("demo")
@click.option("--url", default=_DEFAULT_URL, show_default=True, help="Base URL of the running runtime.")
@click.option("--rate", default=20.0, show_default=True, help="Events appended per second.")
@click.option("--runs", default=10, show_default=True, help="Agent runs to simulate (0: new runs until stopped).")
@click.option("--duration", default=60.0, show_default=True, help="Stop after this many seconds (0: until stopped).")
@click.option("--workers", default=3, show_default=True, help="Simulated workers (lifecycle snapshots).")
@click.option("--user-id", default="demo-user", show_default=True, help="User owning the workers (fleet stream).")
@click.option("--seed", type=int, help="Random seed, for a repeatable workload.")
@_socket_option
@_token_option
def demo(
    url: str,
    rate: float,
    runs: int,
    duration: float,
    workers: int,
    user_id: str,
    seed: int | None,
    socket_path: Path | None,
    token: str | None,
) -> None:
    """Append simulated agent runs and worker lifecycles through the runtime's HTTP API, printing progress.

    \b
    Example:
      autopilot-sync runtime demo --socket ./var/runtime/producer.sock --rate 50 --runs 20 --duration 30
      autopilot-sync runtime demo --rate 5 --runs 0 --duration 0   # until Ctrl-C, as `up` runs it
    """
    from autopilot_sync.runtime.demo import DemoConfig, run_demo

    declare(
        Remedies(
            unreachable="start the runtime (autopilot-sync runtime) or point --url at it",
            unauthorized="use the runtime's --socket, or --token with a control token granting sync.append",
        )
    )
    if rate <= 0:
        raise click.BadParameter("must be > 0", param_hint="--rate")
    if runs < 0 or duration < 0:
        raise click.BadParameter("must be >= 0 (0: until stopped)", param_hint="--runs/--duration")
    prefix = f"demo-{secrets.token_hex(3)}"
    config = DemoConfig(
        url, rate, runs, duration, workers, user_id, prefix, seed=seed, socket_path=socket_path, token=token
    )
    count = f"{runs} runs" if runs > 0 else "runs until stopped"
    click.echo(f"demo {prefix}: {count} on {workers} workers at {rate:g} events/s against {url}")
    result = asyncio.run(run_demo(config, click.echo))
    if result.failed_requests:
        raise SystemExit(1)


@runtime.group("dead-letters")
def dead_letters() -> None:
    """Events the publisher gave up on; each blocks its stream until replayed (see docs/runtime.md runbook).

    Both subcommands ask the running runtime (--url); with the runtime down, --data-dir reads its outbox file.

    \b
    Example:
      autopilot-sync runtime dead-letters list
      autopilot-sync runtime dead-letters replay --stream runtime.run.r-1.events
      autopilot-sync runtime dead-letters list --data-dir ./var/runtime   # the runtime is down
    """
    declare(
        Remedies(
            unreachable="start the runtime, or read its outbox file directly with --data-dir DIR",
            unauthorized="use the runtime's --socket, or --token with a control token granting sync.admin",
        )
    )


_url_option = click.option("--url", default=_DEFAULT_URL, show_default=True, help="Base URL of the running runtime.")
_dir_option = click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Read the outbox file in this directory instead of asking a running runtime.",
)


@dead_letters.command("list")
@_url_option
@_dir_option
@_socket_option
@_token_option
@click.option("--all", "include_replayed", is_flag=True, help="Also show dead letters already replayed.")
def list_command(
    url: str, data_dir: Path | None, socket_path: Path | None, token: str | None, include_replayed: bool
) -> None:
    """List dead letters: stream, seq, retry class and reason.

    \b
    Example:
      autopilot-sync runtime dead-letters list --all
    """
    from autopilot_sync.runtime.deadletter import ApiAccess, list_in_file, list_via_api

    rows = (
        list_in_file(_existing(data_dir), include_replayed)
        if data_dir
        else asyncio.run(list_via_api(url, include_replayed, ApiAccess(socket_path, token)))
    )
    for row in rows:
        click.echo(row.line())
    if not rows:
        click.echo("no dead letters")


@dead_letters.command("replay")
@_url_option
@_dir_option
@_socket_option
@_token_option
@click.option("--stream", "stream_id", help="Replay this stream only (default: every dead-lettered stream).")
def replay_command(
    url: str, data_dir: Path | None, socket_path: Path | None, token: str | None, stream_id: str | None
) -> None:
    """Publish dead-lettered streams again from the event that stopped them (fix the cause first).

    \b
    Example:
      autopilot-sync runtime dead-letters replay --stream runtime.run.r-1.events
    """
    from autopilot_sync.runtime.deadletter import ApiAccess, replay_in_file, replay_via_api

    access = ApiAccess(socket_path, token)
    rows = (
        replay_in_file(_existing(data_dir), stream_id)
        if data_dir
        else asyncio.run(replay_via_api(url, stream_id, access))
    )
    for row in rows:
        click.echo(f"replaying {row.line()}")
    if not rows:
        click.echo("nothing to replay")


def _existing(data_dir: Path) -> Path:
    """The runtime's data directory, refused unless it holds an outbox (opening one would create an empty one)."""
    from autopilot_sync.runtime.store import OUTBOX_FILE

    if not (data_dir / OUTBOX_FILE).is_file():
        raise click.ClickException(
            f"{data_dir} holds no {OUTBOX_FILE}: --data-dir takes the runtime's data directory ({_PREFIX}DATA_DIR)"
        )
    return data_dir
