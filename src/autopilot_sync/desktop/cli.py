"""`autopilot-sync desktop`: the Textual app, its headless JSON mode, key import, and the docs screenshots."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from autopilot_sync.nostr.errors import NostrKeyError

if TYPE_CHECKING:
    from autopilot_sync.desktop.sync import DesktopSync
    from autopilot_sync.settings.fields import ListenAddress

DEFAULT_SCREENSHOT_DIR = Path("docs/images")


@click.group(invoke_without_command=True)
@click.option("--headless", is_flag=True, help="No UI: print one JSON line per state change on stdout.")
@click.option(
    "--import-nsec",
    "import_nsec",
    metavar="NSEC",
    help="Use this key (nsec1... or hex; '-' reads it from stdin) instead of creating one; kept in the config dir.",
)
@click.pass_context
def desktop(ctx: click.Context, headless: bool, import_nsec: str | None) -> None:
    """Follow event streams live, with presence, checkpoints and resume (settings: AUTOPILOT_SYNC_DESKTOP_*).

    The first run creates a Nostr key (mode 0600) in the config dir; the control service turns a signature by it
    into a session token. Local copies and checkpoints live in SQLite next to the key. One desktop per config dir:
    a second one exits 2 naming the PID that holds it.

    \b
    Example:
      autopilot-sync desktop                      # the terminal UI
      autopilot-sync desktop --headless | jq .    # JSON lines for scripts
      echo nsec1... | autopilot-sync desktop --import-nsec -
      autopilot-sync desktop screenshots          # regenerate docs/images/desktop-*.svg
    """
    if ctx.invoked_subcommand is not None:
        return
    from autopilot_sync.client.reconnect import BackoffPolicy
    from autopilot_sync.desktop.identity import CONFIG_DIR_MODE, load_identity
    from autopilot_sync.desktop.store import DesktopStore
    from autopilot_sync.desktop.sync import DesktopSync
    from autopilot_sync.settings.desktop import DesktopSettings
    from autopilot_sync.settings.load import load_settings

    settings = load_settings(DesktopSettings)
    from autopilot_sync.statedir import lock_or_exit

    # Held until the process exits: a second desktop on this config dir exits 2 naming this one's PID.
    lock_or_exit(settings.config_dir, "desktop config directory", "desktop", CONFIG_DIR_MODE)
    if import_nsec == "-":
        import_nsec = sys.stdin.readline().strip()
    try:
        identity = load_identity(settings.config_dir, import_nsec)
    except NostrKeyError as exc:
        raise click.ClickException(str(exc)) from None
    if identity.created:
        click.echo(f"{'imported' if import_nsec else 'created'} {identity.path} ({identity.npub})", err=True)
    if headless:  # stdout carries the JSON lines; diagnostics go to stderr
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    else:  # the terminal belongs to the UI
        logging.basicConfig(
            filename=settings.config_dir / "desktop.log",
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    store = DesktopStore(settings.config_dir / f"{settings.database}.sqlite3")
    sync = DesktopSync(
        base_url=settings.spacetime_base_url,
        database=settings.database,
        control_url=settings.control_url,
        identity=identity,
        store=store,
        streams=settings.streams,
        ack_interval=settings.ack_interval_seconds,
        max_live_streams=settings.max_live_streams,
        policy=BackoffPolicy(cap=settings.reconnect_max_delay_seconds),
    )
    if settings.metrics_listen is not None:
        click.echo(f"metrics at http://{settings.metrics_listen}/metrics", err=True)
    try:
        asyncio.run(_run(sync, headless, settings.metrics_listen))
    finally:
        store.close()


async def _run(sync: DesktopSync, headless: bool, metrics_listen: ListenAddress | None) -> None:
    """The UI or the headless printer, with the optional `/metrics` endpoint around it (both modes alike)."""
    from autopilot_sync.desktop.metrics import serve_metrics

    async with serve_metrics(sync.hub, metrics_listen):
        if headless:
            from autopilot_sync.desktop.headless import run_headless

            await run_headless(sync)
        else:
            from autopilot_sync.desktop.app import run_app

            await run_app(sync)


@desktop.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_SCREENSHOT_DIR,
    show_default=True,
    help="Directory for the SVG files.",
)
def screenshots(out: Path) -> None:
    """Render the states recorded from a real run (desktop-states.json in --out) as the SVGs docs/desktop.md shows.

    Each state is drawn at 80x24 and 120x40. A missing or unreadable recording is refused with one line.

    \b
    Example:
      autopilot-sync desktop screenshots --out docs/images
    """
    from autopilot_sync.desktop.screenshots import write_screenshots

    try:
        written = write_screenshots(out)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise click.ClickException(f"cannot render the recorded states in {out}: {exc}") from None
    for path in written:
        click.echo(str(path))
