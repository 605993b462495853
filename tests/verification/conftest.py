"""Seeds for the chaos suite: `AUTOPILOT_CHAOS_SEED=<n>` replays a run; otherwise a fresh seed is drawn and printed."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import pytest

from autopilot_sync.ops.evidence import stamp


@pytest.fixture
def seed() -> int:
    """The run's seed (printed, and in every failure message with the replay command)."""
    value = int(os.environ.get("AUTOPILOT_CHAOS_SEED") or secrets.randbelow(2**31))
    print(f"AUTOPILOT_CHAOS_SEED={value}")
    return value


#: Which verification suite each scenario test belongs to (docs/verification.md); the compliance signoff reads the
#: result files these produce (`var/verification/<suite>.json`).
SUITE_OF_TEST = {
    "test_presence_follows_two_nostr_identities_and_abrupt_disconnects": "two-client-handshake",
    "test_presence_drops_a_half_open_link_within_the_idle_timeout_bound": "two-client-handshake",
    "test_desktops_apply_exactly_what_the_runtime_acknowledged_on_twenty_streams": "end-to-end",
    "test_network_churn_on_every_pair_while_publishing_loses_nothing": "chaos",
    "test_five_hundred_clients_reconnecting_at_once_keep_the_host_responsive": "chaos",
    "test_stale_cursors_after_trimming_rebuild_from_the_floor": "chaos",
    "test_dropped_acks_make_the_outbox_retry_without_duplicates": "chaos",
    "test_acknowledged_events_survive_a_host_sigkill_and_restart": "chaos",
    "test_acknowledged_events_survive_a_runtime_sigkill_and_restart": "chaos",
    "test_acknowledged_events_survive_a_host_power_cut_and_restart": "chaos",
    "test_an_answered_duplicate_append_survives_a_power_cut_at_the_moment_of_the_answer": "chaos",
    "test_a_row_served_by_sql_survives_a_power_cut_right_after_the_answer": "chaos",
    "test_a_backup_taken_during_writes_restores_every_event_committed_before_it": "chaos",
    "test_desktops_apply_exactly_what_the_runtime_acknowledged_with_the_host_under_power_cut_semantics": "end-to-end",
}
_OUTCOMES: dict[str, dict[str, str]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Remember each scenario test's outcome under its suite (a failed setup or teardown counts as failed)."""
    name = report.nodeid.split("::")[-1].split("[")[0]
    suite = SUITE_OF_TEST.get(name)
    if suite is None:
        return
    tests = _OUTCOMES.setdefault(suite, {})
    if report.failed:
        tests[report.nodeid] = "failed"
    elif report.when == "call" and report.nodeid not in tests:
        tests[report.nodeid] = "skipped" if report.skipped else "passed"


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write one result file per suite that ran completely (every one of its tests reported)."""
    expected: dict[str, int] = {}
    for suite in SUITE_OF_TEST.values():
        expected[suite] = expected.get(suite, 0) + 1
    folder = Path(str(session.config.rootpath)) / "var" / "verification"
    for suite, tests in _OUTCOMES.items():
        if len(tests) < expected[suite]:
            continue  # a partial run (-k, -x) is no evidence for the suite as a whole
        status = "passed" if all(outcome == "passed" for outcome in tests.values()) else "failed"
        folder.mkdir(parents=True, exist_ok=True)
        # The stamp binds the result to this tree and time, so the signoff never counts it for another tree.
        result = {"suite": suite, "status": status, "tests": tests, **stamp(Path(str(session.config.rootpath)))}
        (folder / f"{suite}.json").write_text(json.dumps(result, indent=2))
