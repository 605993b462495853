"""docs/configuration.md is generated from the settings classes, and drift from them is caught."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from autopilot_sync.cli import main
from autopilot_sync.settings.docs import render
from autopilot_sync.settings.registry import SERVICES

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_committed_configuration_page_is_up_to_date() -> None:
    assert (REPO_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8") == render(SERVICES)


def test_page_has_a_table_per_service_with_required_and_defaults() -> None:
    page = render(SERVICES)
    for service in ("host", "control", "runtime", "desktop", "exporter", "ops"):
        assert f"\n## {service}\n" in page
    assert "| `AUTOPILOT_SYNC_HOST_LISTEN` | host:port | `127.0.0.1:3000` |" in page
    assert "| `AUTOPILOT_SYNC_CONTROL_PUBLIC_URL` | http(s) URL | required |" in page
    assert "| `AUTOPILOT_SYNC_HOST_TRUSTED_ISSUERS` | comma-separated http(s) URLs | (empty) |" in page


def test_docs_writes_then_check_passes(tmp_path: Path) -> None:
    output = tmp_path / "configuration.md"
    runner = CliRunner()
    assert runner.invoke(main, ["config", "docs", "--output", str(output)]).exit_code == 0
    checked = runner.invoke(main, ["config", "docs", "--check", "--output", str(output)])
    assert checked.exit_code == 0, checked.output
    assert "up to date" in checked.output


def test_check_detects_drift_and_shows_the_diff(tmp_path: Path) -> None:
    output = tmp_path / "configuration.md"
    output.write_text(render(SERVICES).replace("`127.0.0.1:3000`", "`127.0.0.1:4000`"), encoding="utf-8")
    result = CliRunner().invoke(main, ["config", "docs", "--check", "--output", str(output)])
    assert result.exit_code == 1
    assert "is out of date; regenerate it with `autopilot-sync config docs`" in result.output
    assert "-| `AUTOPILOT_SYNC_HOST_LISTEN` | host:port | `127.0.0.1:4000`" in result.output
    assert "+| `AUTOPILOT_SYNC_HOST_LISTEN` | host:port | `127.0.0.1:3000`" in result.output
    assert output.read_text(encoding="utf-8") != render(SERVICES)


def test_check_fails_when_the_page_is_missing(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["config", "docs", "--check", "--output", str(tmp_path / "absent.md")])
    assert result.exit_code == 1
