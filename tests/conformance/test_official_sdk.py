"""The official SpacetimeDB TypeScript SDK (`spacetimedb` 2.10.1, unchanged) against a real `autopilot-sync host`.

Starts the host as a subprocess (the chat example module, a fresh data directory, port 0 so the OS picks a free one),
waits for its `ready` line, runs `node conformance/sdk_suite.mjs <url> chat` and asserts that every scenario the
suite knows about ran and passed. Each scenario is its own test (parametrized) so a failure names the scenario and
shows the suite's own account of what the SDK expected and what it got.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autopilot_sync.devtools.host_tokens import BANNED_SUBJECT, host_signed_token

pytestmark = pytest.mark.node

ROOT = Path(__file__).resolve().parents[2]
CONFORMANCE = ROOT / "conformance"
SUITE = CONFORMANCE / "sdk_suite.mjs"
DATABASE = "chat"
READY = re.compile(r"autopilot-sync host ready: (http://\S+)")
HOST_START_SECONDS = 30
SUITE_SECONDS = 240

# Every scenario the suite must report (conformance/scenarios.json, the list the Python SDK runs too); a scenario that
# silently stops running fails here.
SCENARIOS = [s["id"] for s in json.loads((CONFORMANCE / "scenarios.json").read_text(encoding="utf-8"))["scenarios"]]


class RunningHost:
    """An `autopilot-sync host` subprocess and everything it printed."""

    def __init__(self, process: subprocess.Popen[str], url: str, output: list[str], data_dir: Path) -> None:
        self.process = process
        self.url = url
        self.output = output
        self.data_dir = data_dir

    def banned_token(self) -> str:
        """A token the host signed whose subject the chat module's `client_connected` refuses."""
        return host_signed_token(self.data_dir, BANNED_SUBJECT)

    def log_tail(self, lines: int = 60) -> str:
        return "".join(self.output[-lines:])


def _start_host(data_dir: Path) -> RunningHost:
    executable = Path(sys.executable).with_name("autopilot-sync")
    env = {name: value for name, value in os.environ.items() if not name.startswith("AUTOPILOT_SYNC_")}
    env.update(
        AUTOPILOT_SYNC_HOST_MODULE="autopilot_sync.examples.chat",
        AUTOPILOT_SYNC_HOST_LISTEN="127.0.0.1:0",
        AUTOPILOT_SYNC_HOST_DATA_DIR=str(data_dir),
        AUTOPILOT_SYNC_HOST_DATABASE=DATABASE,
        PYTHONUNBUFFERED="1",
    )
    process = subprocess.Popen(
        [str(executable), "host"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        cwd=ROOT,
    )
    output: list[str] = []
    found = threading.Event()
    url: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            match = READY.search(line)
            if match and not url:
                url.append(match.group(1))
                found.set()
        found.set()

    threading.Thread(target=pump, name="host-output", daemon=True).start()
    found.wait(HOST_START_SECONDS)
    if not url:
        _stop(process)
        raise RuntimeError(f"host did not print its ready line; output:\n{''.join(output)}")
    return RunningHost(process, url[0], output, data_dir)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    running = _start_host(tmp_path_factory.mktemp("host-data"))
    try:
        yield running
    finally:
        _stop(running.process)


@pytest.fixture(scope="module")
def suite(host: RunningHost) -> dict[str, Any]:
    """Run the whole suite once; scenario name -> its JSON result line (plus the summary under `summary`)."""
    node = shutil.which("node")
    if node is None or not (CONFORMANCE / "node_modules" / "spacetimedb").is_dir():
        pytest.skip("node or conformance/node_modules missing (./dev test installs them)")
    completed = subprocess.run(
        [node, str(SUITE), host.url, DATABASE],
        cwd=CONFORMANCE,
        capture_output=True,
        text=True,
        timeout=SUITE_SECONDS,
        check=False,
        env={**os.environ, "AUTOPILOT_SYNC_CONFORMANCE_BANNED_TOKEN": host.banned_token()},
    )
    results: dict[str, Any] = {}
    for line in completed.stdout.splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if record.get("summary"):
            results["summary"] = record
        else:
            results[record["scenario"]] = record
    failures = [name for name, record in results.items() if name != "summary" and record["status"] != "pass"]
    assert "summary" in results, (
        f"the suite did not finish (exit {completed.returncode})\nstdout:\n{completed.stdout}\n"
        f"stderr:\n{completed.stderr}\nhost log:\n{host.log_tail()}"
    )
    assert (completed.returncode == 0) == (not failures), (completed.returncode, failures)
    results["_stderr"] = completed.stderr
    results["_host_log"] = host.log_tail()
    return results


def test_suite_reports_exactly_the_known_scenarios(suite: dict[str, Any]) -> None:
    assert sorted(name for name in suite if not name.startswith("_") and name != "summary") == SCENARIOS


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_passes(suite: dict[str, Any], scenario: str) -> None:
    record = suite.get(scenario)
    assert record is not None, f"{scenario} did not run"
    assert record["status"] == "pass", (
        f"{scenario} failed: {record.get('error')}\n"
        f"checks that passed first: {record.get('checks')}\n"
        f"observed: {json.dumps(record.get('observed'), indent=1)}\n"
        f"sdk stderr:\n{suite['_stderr']}\nhost log tail:\n{suite['_host_log']}"
    )
    assert record["checks"], f"{scenario} passed without asserting anything"
