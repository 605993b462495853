"""`bench.replay_rows` stores every row it encodes by each path it names (a number per path), alone and against an
exported tree. Nothing here times anything."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.ab import export_tree
from bench.replay_rows import main, measure

PATHS = {"runs", "one_row_txs", "snapshot_rows", "one_at_a_time"}


def test_every_storing_path_stores_every_row_and_reports_a_number() -> None:
    result = measure(300)  # raises unless each path stored all 300 rows
    assert set(result) == {f"{path}_cpu_us_per_row" for path in PATHS}
    assert all(value >= 0 for value in result.values())


def test_an_old_tree_is_compared_round_by_round(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = export_tree("HEAD", tmp_path / "old")
    assert main(["--events", "200", "--old", str(src), "--rounds", "1"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(printed) == {"old", "new", "load_average"}
    assert set(printed["old"]) == set(printed["new"]) == {f"{path}_cpu_us_per_row" for path in PATHS}
