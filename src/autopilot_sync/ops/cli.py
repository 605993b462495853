"""`autopilot-sync module` (the publish lane) and `autopilot-sync compliance` (the signoff report)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import click

from autopilot_sync.settings.ops import Environment

_ENV = click.option(
    "--env",
    "env_name",
    type=click.Choice([env.value for env in Environment]),
    required=True,
    help="Target environment; its AUTOPILOT_SYNC_OPS_<ENV>_* variables must all be set.",
)
_MODULE = click.option(
    "--module",
    "module_path",
    default="autopilot_sync.module",
    show_default=True,
    help="Python module whose `module` is released; it must be installed on the target host under this path.",
)
_JS_PATH = click.option(
    "--js-path",
    "js_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A built TypeScript module (what `autopilot-sync build` writes) to release instead of --module; uploaded.",
)
_BREAK = click.option(
    "--break-clients",
    is_flag=True,
    help="Allow a migration that disconnects clients to fetch new row shapes (a column added).",
)
_DELETE = click.option(
    "--delete-data",
    is_flag=True,
    help="Publish even a breaking change by deleting the environment's data (a new incarnation).",
)


def _run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a lane coroutine; lane and config errors end the command with their message and exit 1 or 2."""
    from autopilot_sync.ops.drift import DriftError
    from autopilot_sync.ops.ledger import LedgerError
    from autopilot_sync.ops.publish import LaneError

    try:
        return asyncio.run(coroutine)
    except (LaneError, LedgerError, DriftError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None


def _lane(env_name: str) -> Any:
    """The lane of an environment from the env contract; exit 2 naming each missing variable."""
    from autopilot_sync.ops.publish import Lane
    from autopilot_sync.settings.load import EXIT_CONFIG, load_settings
    from autopilot_sync.settings.ops import IncompleteTargetError, OpsSettings

    settings = load_settings(OpsSettings)
    try:
        return Lane(settings.target(Environment(env_name)))
    except IncompleteTargetError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_CONFIG) from None


def _release(module_path: str, js_path: Path | None = None) -> Any:
    from autopilot_sync.host.server import ModuleLoadError, load_module
    from autopilot_sync.ops.publish import LaneError, Release, describe_bundle

    if js_path is not None:
        try:
            return Release.of_bundle(js_path, js_path.read_bytes(), describe_bundle(js_path))
        except (OSError, LaneError) as exc:
            click.echo(f"error: cannot load {js_path}: {getattr(exc, 'strerror', None) or exc}", err=True)
            raise SystemExit(2) from None
    try:
        return Release.of(load_module(module_path), module_path)
    except ModuleLoadError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None


def _finish(outcome: Any) -> None:
    for line in outcome.lines:
        click.echo(line)
    if outcome.status:
        raise SystemExit(outcome.status)


@click.group("module")
def module_group() -> None:
    """Publish lane of the sync module: drift check, release ledger, post-publish verification, rollback.

    Each release is published to the environment's running host over PUT /v1/database/:name, as its owner, then
    verified (GO / NO-GO); the ledger records every step (docs/runbooks/deployment.md).

    \b
    Example:
      autopilot-sync module diff --env dev
      autopilot-sync module publish --env dev
      autopilot-sync module promote --env staging
      autopilot-sync module rollback --env prod
    """


@module_group.command("tag")
@_MODULE
@_JS_PATH
def tag(module_path: str, js_path: Path | None) -> None:
    """Print the deterministic release tag of the local module: v<version>-<12 hex of its schema hash>.

    \b
    Example:
      autopilot-sync module tag
      autopilot-sync module tag --js-path build/autopilot-sync.js
    """
    release = _release(module_path, js_path)
    click.echo(f"{release.tag} {release.schema_hash}")


@module_group.command("diff")
@_ENV
@_MODULE
@_JS_PATH
@click.option("--json", "as_json", is_flag=True, help="Print the changes as JSON.")
def diff(env_name: str, module_path: str, js_path: Path | None, as_json: bool) -> None:
    """Show the schema drift from what the environment's host serves to the local module; exit 1 if breaking.

    \b
    Example:
      autopilot-sync module diff --env staging
    """
    lane, release = _lane(env_name), _release(module_path, js_path)
    drift = _run(lane.diff(release))
    if as_json:
        click.echo(json.dumps([change.to_json() for change in drift.changes], indent=1))
    else:
        click.echo(drift.render())
    if drift.breaking:
        raise SystemExit(1)


@module_group.command("publish")
@_ENV
@_MODULE
@_JS_PATH
@_DELETE
@_BREAK
def publish(env_name: str, module_path: str, js_path: Path | None, delete_data: bool, break_clients: bool) -> None:
    """Check drift against the live host, record the release, publish it to the running host, verify: GO or NO-GO.

    Refuses breaking changes without --delete-data (which deletes that environment's data).

    \b
    Example:
      autopilot-sync module publish --env dev
      autopilot-sync module publish --env dev --module my_app.module_v2
      autopilot-sync module publish --env dev --js-path build/autopilot-sync.js
    """
    lane, release = _lane(env_name), _release(module_path, js_path)
    _finish(_run(lane.publish(release, delete_data=delete_data, break_clients=break_clients)))


@module_group.command("promote")
@_ENV
@_MODULE
@_JS_PATH
@_DELETE
@_BREAK
def promote(env_name: str, module_path: str, js_path: Path | None, delete_data: bool, break_clients: bool) -> None:
    """Publish to staging (prod) the release that is current and verified in dev (staging), then verify it.

    \b
    Example:
      autopilot-sync module promote --env staging
      autopilot-sync module promote --env prod
    """
    from autopilot_sync.ops.ledger import Ledger

    environment = Environment(env_name)
    origin = environment.promoted_from
    if origin is None:
        click.echo("error: dev is the first environment: use `autopilot-sync module publish --env dev`", err=True)
        raise SystemExit(2)
    lane, release = _lane(env_name), _release(module_path, js_path)
    source = Ledger(lane.target.state_dir / origin.value)
    _finish(_run(lane.promote(release, source, delete_data=delete_data, break_clients=break_clients)))


@module_group.command("rollback")
@_ENV
@_DELETE
@_BREAK
def rollback(env_name: str, delete_data: bool, break_clients: bool) -> None:
    """Publish the previous recorded release again when the migration rules allow it (else refuse, saying why).

    \b
    Example:
      autopilot-sync module rollback --env prod
    """
    lane = _lane(env_name)
    _finish(_run(lane.rollback(delete_data=delete_data, break_clients=break_clients)))


@module_group.command("verify")
@_ENV
@click.option("--tag", "tag_name", default=None, help="Fail unless this is the environment's current release.")
def verify(env_name: str, tag_name: str | None) -> None:
    """Check the live host against the current release: schema hash, token, subscription, heartbeat; GO or NO-GO.

    \b
    Example:
      autopilot-sync module verify --env prod
    """
    _finish(_run(_lane(env_name).verify(tag_name)))


@module_group.command("status")
@_ENV
def status(env_name: str) -> None:
    """Print the environment's release history (newest last) and whether the current release is verified.

    \b
    Example:
      autopilot-sync module status --env staging
    """
    lane = _lane(env_name)
    entries = lane.ledger.entries()
    if not entries:
        click.echo(f"{env_name}: no release recorded ({lane.ledger.path})")
        return
    for entry in entries:
        ok = entry.detail.get("ok")
        mark = "" if ok is None else (" ok" if ok else " FAILED")
        click.echo(f"{entry.at} {entry.action.value:<8} {entry.tag}{mark}")
    current = lane.ledger.current()
    if current is not None:
        verified = lane.ledger.verified(current.tag)
        state = f"verified at {verified.at}" if verified else "NOT verified"
        click.echo(f"current: {current.tag} ({state})")


@click.group("compliance")
def compliance() -> None:
    """Compliance evidence for ADR 0001 (Spacetime-only sync).

    \b
    Example:
      autopilot-sync compliance signoff
      autopilot-sync compliance signoff --final --out var/compliance/signoff.md
    """


@compliance.command("signoff")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("var/compliance/signoff.md"),
    show_default=True,
    help="Markdown report to write; the JSON report goes next to it with the suffix .json.",
)
@click.option(
    "--root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Repository to judge (default: the git work tree around the current directory).",
)
@click.option(
    "--max-age-hours",
    type=click.FloatRange(min=0, min_open=True),
    default=12.0,
    show_default=True,
    help="A suite result older than this is stale evidence (red).",
)
@click.option("--final", is_flag=True, help="Final signoff: the exception registry must also be empty.")
@click.option(
    "--suite",
    "suites",
    multiple=True,
    help="Expected verification suite (repeatable; default: two-client-handshake, end-to-end, chaos).",
)
def signoff_command(out: Path, root: Path | None, max_age_hours: float, final: bool, suites: tuple[str, ...]) -> None:
    """Write the compliance report (Markdown + JSON) and exit 1 when it is red.

    Checks: blocked-symbol scan, exception registry, every CLI command documented, docs/configuration.md current,
    verification suite results under var/verification/.

    \b
    Example:
      autopilot-sync compliance signoff
      autopilot-sync compliance signoff --max-age-hours 2 --out var/compliance/release-1.md
    """
    from autopilot_sync.checkout import checkout_root
    from autopilot_sync.gate.symbols import BLOCKED_SYMBOLS_PATH
    from autopilot_sync.ops.signoff import EXPECTED_SUITES, signoff

    base = checkout_root(root, BLOCKED_SYMBOLS_PATH, "compliance signoff")
    cli = click.get_current_context().find_root().command
    report = signoff(
        base,
        cli,
        final=final,
        expected_suites=suites or EXPECTED_SUITES,
        max_age=dt.timedelta(hours=max_age_hours),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.markdown(), encoding="utf-8")
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps(report.to_json(), indent=1) + "\n", encoding="utf-8")
    for check in report.checks:
        click.echo(f"{'green' if check.ok else 'RED  '} {check.name}: {check.summary}")
        if not check.ok:
            for item in check.evidence[:20]:
                click.echo(f"      {item}")
    click.echo(f"signoff {'GREEN' if report.ok else 'RED'}: wrote {out} and {json_path}")
    if not report.ok:
        raise SystemExit(1)
