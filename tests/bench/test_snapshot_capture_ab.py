"""`bench.snapshot_capture` takes snapshots under fan-in and reports the loop's share in them, alone and against an
exported tree; `bench.ab.run_worker` hands back a worker's last JSON line or its failure. Nothing here times
anything."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.ab import export_tree, run_worker
from bench.snapshot_capture import main, measure

KEYS = {"captures", "capture_loop_ms_each", "after_commit_share_pct", "loop_cpu_us_per_event"}


def test_fan_in_calls_take_snapshots_and_report_their_share() -> None:
    # 400 calls of 30 events (~6 MB of log) over 100 streams: at least one snapshot at the default 4 MiB of log
    result = asyncio.run(measure(100, 400))
    assert set(result) == KEYS
    assert result["captures"] >= 1
    assert 0 <= result["after_commit_share_pct"] <= 100


def test_an_old_tree_is_compared_round_by_round(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = export_tree("HEAD", tmp_path / "old")
    assert main(["--streams", "50", "--calls", "40", "--old", str(src), "--rounds", "1"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(printed) == {"old", "new", "load_average"}
    assert set(printed["old"]) == set(printed["new"]) == KEYS


def test_a_worker_answers_with_its_last_json_line_or_fails_with_its_error() -> None:
    env = dict(os.environ)
    assert run_worker(["-c", "print('warming up'); print('{\"x\": 1.5}')"], env, "worker") == {"x": 1.5}
    with pytest.raises(RuntimeError, match=r"(?s)worker failed.*boom"):
        run_worker(["-c", "raise SystemExit('boom')"], env, "worker")
