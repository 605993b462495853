"""Keep the A/B scaffolding (`bench/ab.py`) and the scripts built on it alive: order, medians, the old tree, a real
interleaved run. Nothing here times anything."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.ab import REPO, Samples, export_tree, interleaved, on_pythonpath, table, with_pythonpath

from typescript_twin import TWIN_DIR, ensure_installed, node_available


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


AB_SCRIPTS = [
    "percall_ab",
    "batched_ab",
    "sdkcall_ab",
    "large_start",
    "startup",
    "storm",
    "replay_rows",
    "jsmodule_cpu",
    "jsmodule_bench",
    "ws_framing",
    "sdk_receive",
    "heads_ab",
]


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


def _bench(*argv: str, timeout: float = 300) -> str:
    done = subprocess.run(
        [sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_fan_in_heads_comparison_runs_both_trees_for_every_spread(tmp_path: Path) -> None:
    """`bench.heads_ab --old`: a worker per tree, calls over each number of streams, medians and pairwise ratios."""
    src = export_tree("HEAD", tmp_path / "old")
    out = _bench(
        "bench.heads_ab", "--old", str(src), "--sessions", "1", "--pairs", "1", "--calls", "2", "--events", "4",
        "--spread", "1,4", "--streams", "8",
    )  # fmt: skip
    summary = json.loads(out.splitlines()[-1])["median of sessions"]
    assert set(summary) == {
        f"{name} S={spread}{unit}"
        for spread in ("1", "4")
        for name, unit in (("old", " us/event"), ("new", " us/event"), ("new/old", ""))
    }


@pytest.mark.node
def test_the_typescript_twins_cpu_comparison_runs_both_trees_in_turn(tmp_path: Path) -> None:
    """`bench.jsmodule_cpu --old-commit`: a tree exported by `export_tree` and this one, one tiny run each."""
    if not node_available():
        pytest.skip("node and npm are needed to build the TypeScript twin (./dev test installs them)")
    ensure_installed(TWIN_DIR)
    out = _bench("bench.jsmodule_cpu", "--calls", "2", "--events", "3", "--rounds", "1", "--old-commit", "HEAD")
    assert "| metric | old | new |" in out and "| cpu_ms |" in out and "| runner_ms |" in out


@pytest.mark.node
def test_the_module_runner_crossing_compares_its_variants_interleaved() -> None:
    if not node_available():
        pytest.skip("node and npm are needed to build the TypeScript twin (./dev test installs them)")
    ensure_installed(TWIN_DIR)
    out = _bench(
        *("bench.jsmodule_bench", "--calls", "3", "--syscalls", "3", "--appends", "2", "--batch", "3"),
        *("--variant", "spin=0", "--variant", "spin=200", "--rounds", "2"),
    )
    assert "| crossing, median µs | spin=0 | spin=200 |" in out
    assert "| TypeScript twin, spin=0 |" in out and "| TypeScript twin, spin=200 |" in out


def test_the_websocket_framing_comparison_runs_with_the_stacks_installed() -> None:
    """aiohttp always (the host's stack); picows as well where it is installed (no project dependency)."""
    stacks = "aiohttp,picows" if importlib.util.find_spec("picows") is not None else "aiohttp"
    out = _bench("bench.ws_framing", "--stacks", stacks, "--calls", "20", "--rounds", "2", timeout=120)
    medians = json.loads(out.strip().splitlines()[-1])
    for stack in stacks.split(","):  # the harness ran both ends of each stack; how much CPU it read is not judged
        assert medians[f"server_{stack}_us"] >= 0 and medians[f"client_{stack}_us"] >= 0
