"""Test files have unique basenames: the suite has no packages (`rootdir` import mode), so two files with one name
in different folders make pytest stop at collection, and with it `./dev test` and CI."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
#: Files pytest never imports by basename: conftest.py (loaded per folder) and the fault injectors' sitecustomize.py
#: (put on a child process's PYTHONPATH).
NOT_IMPORTED_BY_NAME = {"conftest.py", "sitecustomize.py"}


def test_no_two_test_files_share_a_basename() -> None:
    by_name: dict[str, list[str]] = defaultdict(list)
    for path in TESTS.rglob("*.py"):
        if "node_modules" not in path.parts:
            by_name[path.name].append(str(path.relative_to(TESTS)))
    shared = {name: paths for name, paths in by_name.items() if len(paths) > 1 and name not in NOT_IMPORTED_BY_NAME}
    assert shared == {}
