"""Old against new in one run: the scaffolding every A/B benchmark shares (`percall_ab`, `batched_ab`, `sdkcall_ab`,
`startup`, `large_start`, `storm`, `replay_rows`, `jsmodule_cpu`; `jsmodule_bench` and `ws_framing` alternate their
variants with `interleaved` too).

On the shared 2-core machine wall time mostly measures the other processes, so code versions are compared inside one
run: the old tree exported with `git archive` and put first on `PYTHONPATH` (`export_tree`, `on_pythonpath`), the
variants measured in turn with the order flipped every round (`interleaved`), every round's numbers kept per variant
and reported as medians (`Samples`), printed as one table (`table`). Each script keeps only what it measures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from bench.stats import median

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def export_tree(commit: str, dest: Path) -> Path:
    """`git archive <commit> src` unpacked under `dest`, with this checkout's compiled extensions copied beside their
    sources (not in git; a tree whose C source changed since needs its own build). Returns the tree's `src`."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", commit, "src"], cwd=REPO, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    for built in (REPO / "src").rglob("*.so"):
        target = dest / built.relative_to(REPO)
        if target.parent.exists():
            shutil.copy2(built, target)
    return dest / "src"


def with_pythonpath(env: dict[str, str], src: str | None) -> dict[str, str]:
    """`env` with `src` first on `PYTHONPATH` (None or empty: unchanged)."""
    if not src:
        return env
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))}


def run_worker(argv: Sequence[str], env: dict[str, str], what: str, timeout: float = 900) -> dict[str, float]:
    """Run `python <argv>` from this checkout with `env` (a tree on its `PYTHONPATH`: `with_pythonpath`) and return
    the JSON object its last line of output holds: how every A/B script measures one side in a fresh process."""
    done = subprocess.run(
        [sys.executable, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@contextmanager
def on_pythonpath(src: str | None) -> Iterator[None]:
    """Children started inside run with `src` as their `PYTHONPATH` (None: this tree's own, as inherited); the
    variable is restored afterwards, whatever happened."""
    inherited = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = src if src is not None else inherited or ""
    try:
        yield
    finally:
        if inherited is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = inherited


def interleaved(variants: Sequence[T], rounds: int) -> Iterator[tuple[int, T]]:
    """(round, variant) for every round, A B, B A, A B …: the order flips each round, so neither side always runs
    first (on a loaded machine the first run of a pair measured differently from the second)."""
    for round_no in range(rounds):
        for variant in variants if round_no % 2 == 0 else variants[::-1]:
            yield round_no, variant


def worker_rounds(
    trees: dict[str, str], worker: str, argv: Sequence[str], rounds: int, warmup: int
) -> dict[str, list[Any]]:
    """Every tree's rounds after `warmup`, from one long-lived worker per tree, asked in `interleaved` order.

    A worker is `python -c worker *argv` with the tree's `src` first on `PYTHONPATH` (and `bench` from this checkout);
    it answers each `go` line with one JSON line (a round). The workers live across rounds so each keeps its warm
    process (`engine_pair_ab`, `heads_ab`).
    """
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", worker, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=dict(os.environ, PYTHONPATH=os.pathsep.join([src, str(REPO)])),
        )
        for name, src in trees.items()
    }
    kept: dict[str, list[Any]] = {name: [] for name in trees}
    try:
        for round_no, name in interleaved(list(trees), rounds + warmup):
            proc = procs[name]
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
            answer = json.loads(proc.stdout.readline())
            if round_no >= warmup:
                kept[name].append(answer)
    finally:
        for proc in procs.values():
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(60)
    return kept


class Samples:
    """Every round's numbers per variant; `medians` is what the scripts report."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, list[float]]] = {}

    def add(self, variant: str, row: dict[str, float]) -> None:
        """Keep one round's numbers of `variant`."""
        columns = self.rows.setdefault(variant, {})
        for key, value in row.items():
            columns.setdefault(key, []).append(value)

    def medians(self) -> dict[str, dict[str, float]]:
        """variant -> column -> median over its rounds."""
        return {name: {key: median(values) for key, values in rows.items()} for name, rows in self.rows.items()}


def table(medians: dict[str, dict[str, float]]) -> str:
    """The medians as a Markdown table, one row per column, one column per variant, with the load average."""
    variants = list(medians)
    keys = list(dict.fromkeys(key for row in medians.values() for key in row))
    lines = ["| metric | " + " | ".join(variants) + " |", "|---|" + "---:|" * len(variants)]
    for key in keys:
        cells = [f"{medians[name].get(key, float('nan')):.4g}" for name in variants]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return "\n".join([*lines, f"medians of interleaved rounds; load average {load}"])


def report_old_against_new(old: str, rounds: int, side: Callable[[str | None], dict[str, float]]) -> None:
    """Measure the old tree (`old`, its `src` on `PYTHONPATH`) and this one with `side`, in turn, the order flipped
    every round; print the medians as JSON on stdout (with the load average) and as a table on stderr."""
    samples = Samples()
    for _, (name, src) in interleaved([("old", old), ("new", None)], rounds):
        samples.add(name, side(src))
    medians = samples.medians()
    print(json.dumps(medians | {"load_average": os.getloadavg()}))
    print(table(medians), file=sys.stderr)
