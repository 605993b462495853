"""The guards catch an in-process component; the CLI and the soak results directory work."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from autopilot_sync.verification.guards import process_violations
from autopilot_sync.verification.scenarios.run import Profile
from autopilot_sync.verification.soak import soak


async def test_a_component_listening_inside_the_verifier_is_flagged() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    try:
        found = process_violations([("host", os.getpid(), port)], [("desktop", None, port)])
    finally:
        server.close()
    assert {v.what for v in found} == {"not a process", "in-process"}


def test_chaos_help_shows_an_example() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "autopilot_sync", "chaos", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--seed" in out and "--soak" in out and "autopilot-sync chaos --scenario churn --seed 1234" in out
    assert "--power-cut" in out and "autopilot-sync chaos --scenario host-sigkill --power-cut" in out


async def test_a_soak_writes_json_lines_and_a_markdown_summary(tmp_path: Path) -> None:
    tiny = Profile(streams=3, events_per_stream=4, batch_size=2, desktops=1)
    totals = await soak(0, 77, tmp_path, ["end-to-end"], tiny)
    assert totals.runs == 1 and totals.failed == 0, totals.failures
    results = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert results[0]["ok"] and results[0]["metrics"]["events"] == 12
    assert "replay" in results[0]
    events = (tmp_path / "events.jsonl").read_text().splitlines()
    assert any(json.loads(line)["type"] == "result" for line in events)
    summary = (tmp_path / "summary.md").read_text()
    assert "faults injected" in summary and "Master seed 77" in summary
