"""`autopilot-sync chaos`: run one scenario from a seed, every scenario once, or a soak for some minutes."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import tempfile
from pathlib import Path

import click

from autopilot_sync.verification.powercut import PowerCutFault
from autopilot_sync.verification.scenarios.registry import SCENARIOS, run_scenario
from autopilot_sync.verification.scenarios.run import CI, SOAK, Journal, result_record, write_history
from autopilot_sync.verification.soak import soak


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--scenario",
    "names",
    multiple=True,
    type=click.Choice(sorted(SCENARIOS)),
    help="Scenario to run (repeatable; default: all).",
)
@click.option("--seed", type=int, default=None, help="Seed to replay (printed by every run); random when absent.")
@click.option(
    "--soak", "minutes", type=float, default=None, help="Run the scenarios back to back for this many minutes."
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Results directory (JSON lines + summary.md).",
)
@click.option(
    "--profile",
    type=click.Choice(["ci", "soak"]),
    default=None,
    help="Sizes: ci (small) or soak (default with --soak).",
)
@click.option(
    "--power-cut",
    is_flag=True,
    help="Run the host under power-cut semantics: commit-log writes not yet fsynced are lost when it dies, so "
    "every host SIGKILL (host-sigkill) is a power cut, timed while bytes are unfsynced.",
)
def chaos(
    names: tuple[str, ...],
    seed: int | None,
    minutes: float | None,
    out_dir: Path | None,
    profile: str | None,
    power_cut: bool,
) -> None:
    """Run the verification scenarios against real processes behind fault proxies, and check the history.

    Every run prints its seed; the same seed replays the same keys, payloads and fault plan.

    \b
    Examples:
      autopilot-sync chaos --scenario churn               # one scenario, random seed (printed)
      autopilot-sync chaos --scenario churn --seed 1234   # replay it
      autopilot-sync chaos --scenario host-sigkill --power-cut   # host kills lose unfsynced log bytes
      autopilot-sync chaos --soak 30 --out ./chaos-results
    """
    chosen = list(names) or sorted(SCENARIOS)
    master = seed if seed is not None else secrets.randbelow(2**31)
    sizes = SOAK if (profile == "soak" or (profile is None and minutes is not None)) else CI
    fault = PowerCutFault() if power_cut else None
    if minutes is not None:
        target = out_dir or Path(f"chaos-results-{master}")
        click.echo(f"chaos soak: {minutes:g} minutes, master seed {master}, results in {target}")
        totals = asyncio.run(soak(minutes, master, target, chosen, sizes, fault))
        click.echo((target / "summary.md").read_text())
        sys.exit(1 if totals.failed else 0)
    failed = 0
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    for name in chosen:
        with tempfile.TemporaryDirectory(prefix=f"chaos-{name}-") as root:
            events = (out_dir / "events.jsonl").open("a") if out_dir is not None else None
            try:
                result = asyncio.run(run_scenario(name, master, Path(root), sizes, Journal(events), fault))
            finally:
                if events is not None:
                    events.close()
        click.echo(result.summary())
        if out_dir is not None:
            with (out_dir / "results.jsonl").open("a") as results:
                results.write(json.dumps(result_record(result), sort_keys=True, default=str) + "\n")
            if not result.ok:
                write_history(result, out_dir)
        failed += 0 if result.ok else 1
    sys.exit(1 if failed else 0)


@click.command("verify-stream", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("stream_id")
@click.option("--url", default="http://127.0.0.1:3000", show_default=True, help="Base URL of the host.")
@click.option("--database", default="autopilot-sync", show_default=True, help="Database name on the host.")
@click.option("--token", default=None, help="A session token with scope sync.subscribe covering the stream.")
@click.option("--control-url", default=None, help="Fetch a token from this control service instead of --token.")
@click.option(
    "--key",
    "key_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="The Nostr secret key file proving who asks control (with --control-url).",
)
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for the host.")
def verify_stream(
    stream_id: str,
    url: str,
    database: str,
    token: str | None,
    control_url: str | None,
    key_path: Path | None,
    timeout: float,
) -> None:
    """Audit a stream on a running host: recompute its hash chain from the retained floor; OK or the first bad seq.

    Reads the stream's head and every retained event in one subscription, checks that every seq from the floor to
    the head is there, that each payload hashes to its payload_hash, that each chain value links to the one before
    it (from floor_chain) and that the last one is head_chain (docs/protocol.md "Stream hash chain"). Exit 0 when
    the stream verifies, 1 on a break (printed with the first bad seq), 2 when the audit could not run.

    \b
    Examples:
      autopilot-sync verify-stream runtime.run.r1.events --token "$TOKEN"
      autopilot-sync verify-stream runtime.run.r1.events --url http://127.0.0.1:3000 \\
          --control-url http://127.0.0.1:3100 --key ~/.config/autopilot-sync/desktop/nostr.key
    """
    from autopilot_sync.desktop.stream_audit import StreamAuditError, audit, fetch_stream

    async def run() -> str:
        bearer = token
        if bearer is None and control_url is not None:
            if key_path is None:
                raise click.UsageError("--control-url needs --key")
            bearer = await _session_token(control_url, key_path, stream_id)
        try:
            async with asyncio.timeout(timeout):
                head, events = await fetch_stream(url, database, stream_id, bearer)
        except TimeoutError:
            raise StreamAuditError(f"no answer from {url} within {timeout:g}s") from None
        result = audit(head, events)
        click.echo(result.render())
        return "ok" if result.ok else "broken"

    try:
        outcome = asyncio.run(run())
    except StreamAuditError as exc:
        click.echo(f"verify-stream: {exc}", err=True)
        sys.exit(2)
    sys.exit(0 if outcome == "ok" else 1)


async def _session_token(control_url: str, key_path: Path, stream_id: str) -> str:
    """A read token for one stream, from control, for the key in `key_path`."""
    from autopilot_sync.control.client import TokenFetchError, fetch_session_token
    from autopilot_sync.desktop.stream_audit import StreamAuditError
    from autopilot_sync.nostr.keyfile import load_secret_key

    try:
        grant = await fetch_session_token(
            control_url, load_secret_key(key_path), ("sync.subscribe",), (stream_id,), None, "verify-stream"
        )
    except TokenFetchError as exc:
        raise StreamAuditError(f"control refused a token: {exc}") from None
    return grant.token
