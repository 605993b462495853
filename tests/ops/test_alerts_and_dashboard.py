"""Alert rules and the dashboard: valid for promtool and Grafana, tied to runbooks and to metrics that exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from ops_metric_catalog import families, series_names

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "autopilot-sync.json"
RUNBOOKS = ROOT / "docs" / "runbooks"
PROMETHEUS_BUILTINS = {"up"}
_METRIC = re.compile(r"\bautopilot_sync_[a-z0-9_]+\b")

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing: run scripts/install-system-deps.sh (./dev test does)"
)


def alert_blocks() -> dict[str, str]:
    """Alert name -> the text of its rule (from `- alert:` to the next rule or group)."""
    text = ALERTS.read_text(encoding="utf-8")
    parts = re.split(r"^\s*- (?=alert:|name:)", text, flags=re.MULTILINE)
    blocks: dict[str, str] = {}
    for part in parts:
        match = re.match(r"alert: (\w+)", part)
        if match:
            assert match.group(1) not in blocks, f"alert {match.group(1)} defined twice"
            blocks[match.group(1)] = part
    return blocks


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run([str(PROMTOOL), "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_blocks())} rules found" in done.stdout


@needs_promtool
def test_every_alert_fires_and_stays_quiet_as_its_unit_tests_say() -> None:
    done = subprocess.run(
        [str(PROMTOOL), "test", "rules", str(ALERT_TESTS)], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert done.returncode == 0, done.stdout + done.stderr
    tested = set(re.findall(r"alertname: (\w+)", ALERT_TESTS.read_text(encoding="utf-8")))
    assert tested == set(alert_blocks()), "every alert needs a promtool unit test"


def test_every_alert_links_its_runbook_and_every_runbook_has_an_alert() -> None:
    blocks = alert_blocks()
    assert len(blocks) >= 10
    for name, block in blocks.items():
        assert f"runbook_url: docs/runbooks/{name}.md" in block, f"{name} lacks its runbook_url"
        assert re.search(r"severity: (critical|warning)", block), f"{name} lacks a severity"
        assert (RUNBOOKS / f"{name}.md").is_file(), f"docs/runbooks/{name}.md is missing"
    documented = {path.stem for path in RUNBOOKS.glob("*.md")} - {"deployment"}
    assert documented == set(blocks), "a runbook without an alert, or an alert without a runbook"


def test_runbooks_say_what_to_check_and_what_go_looks_like() -> None:
    for name in alert_blocks():
        text = (RUNBOOKS / f"{name}.md").read_text(encoding="utf-8")
        for heading in ("## What it means", "## Check", "## Go / no-go", "## Mitigate"):
            assert heading in text, f"{name}.md lacks {heading!r}"
        assert "```" in text, f"{name}.md shows no exact command"


def test_alerts_use_only_metrics_the_code_exports() -> None:
    exported = series_names()
    used = set(_METRIC.findall(ALERTS.read_text(encoding="utf-8")))
    assert used, "no metric found in the rules"
    assert used <= exported, f"unknown metrics in alerts.yml: {sorted(used - exported)}"
    other = set(re.findall(r"\b([a-z_]+)\{job=", ALERTS.read_text(encoding="utf-8")))
    assert other <= PROMETHEUS_BUILTINS


def test_dashboard_is_valid_json_whose_panels_query_real_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "autopilot-sync"
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(exprs) >= 20
    used = {name for expr in exprs for name in _METRIC.findall(expr)}
    exported = series_names()
    assert used <= exported, f"unknown metrics in the dashboard: {sorted(used - exported)}"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    alerted = {name for name in _METRIC.findall(ALERTS.read_text(encoding="utf-8"))}
    assert alerted <= used, f"alerted metrics without a panel: {sorted(alerted - used)}"


def test_operations_doc_lists_exactly_the_exported_metrics() -> None:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(autopilot_sync_[a-z0-9_]+)`[^|]*\| (\w+) \|", text, flags=re.MULTILINE))
    exported = families()
    assert set(rows) == set(exported), (
        f"undocumented: {sorted(set(exported) - set(rows))}; not exported: {sorted(set(rows) - set(exported))}"
    )
    for name, kind in exported.items():
        assert rows[name] == kind, f"{name} is a {kind}, documented as {rows[name]}"
