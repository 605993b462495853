"""Keep the A/B scaffolding (`bench/ab.py`) and the scripts built on it alive: order, medians, the old tree, a real
interleaved run. Nothing here times anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.ab import REPO, Samples, export_tree, interleaved, on_pythonpath, table, with_pythonpath


def test_variants_alternate_and_the_order_flips_every_round() -> None:
    assert list(interleaved(["old", "new"], 3)) == [
        (0, "old"),
        (0, "new"),
        (1, "new"),
        (1, "old"),
        (2, "old"),
        (2, "new"),
    ]


def test_rounds_are_reported_as_medians_per_variant_and_as_one_table() -> None:
    samples = Samples()
    for value in (3.0, 1.0, 2.0):
        samples.add("old", {"cpu_us": value, "rate": value * 10})
    samples.add("new", {"cpu_us": 5.0})
    medians = samples.medians()
    assert medians == {"old": {"cpu_us": 2.0, "rate": 20.0}, "new": {"cpu_us": 5.0}}
    lines = table(medians).splitlines()
    assert lines[0] == "| metric | old | new |"
    assert lines[2] == "| cpu_us | 2 | 5 |" and lines[3] == "| rate | 20 | nan |"
    assert lines[-1].startswith("medians of interleaved rounds; load average ")


def test_a_tree_goes_first_on_pythonpath_and_the_variable_is_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/inherited")
    assert with_pythonpath({"PYTHONPATH": "/inherited"}, "/old/src")["PYTHONPATH"] == os.pathsep.join(
        ["/old/src", "/inherited"]
    )
    assert with_pythonpath({"A": "1"}, None) == {"A": "1"}
    with on_pythonpath("/old/src"):
        assert os.environ["PYTHONPATH"] == "/old/src"
    with on_pythonpath(None):
        assert os.environ["PYTHONPATH"] == "/inherited"
    assert os.environ["PYTHONPATH"] == "/inherited"


def test_the_old_tree_is_exported_with_the_built_extensions(tmp_path: Path) -> None:
    src = export_tree("HEAD", tmp_path / "old")
    assert (src / "autopilot_sync" / "host" / "engine.py").is_file()
    built = {path.relative_to(REPO / "src") for path in (REPO / "src").rglob("*.so")}
    assert {path.relative_to(src) for path in src.rglob("*.so")} == built


def test_an_interleaved_startup_comparison_runs_both_trees(tmp_path: Path) -> None:
    """`bench.startup` with an exported tree: both variants start a real host each round and are reported."""
    src = export_tree("HEAD", tmp_path / "old")
    done = subprocess.run(
        [sys.executable, "-m", "bench.startup", "--rounds", "1", "--tree", f"old={src}"],
        cwd=REPO,
        env=with_pythonpath({**os.environ}, str(REPO)),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "this: wall p50" in done.stdout and "old: wall p50" in done.stdout


AB_SCRIPTS = ["percall_ab", "batched_ab", "sdkcall_ab", "sdk_receive", "large_start", "startup", "storm", "replay_rows"]


@pytest.mark.parametrize("script", AB_SCRIPTS)
def test_every_ab_script_imports_and_explains_itself(script: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{script}", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr[-2000:]
