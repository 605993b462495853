"""The host's reading of a `sysn` frame (the one-way syscalls a module made between two answered ones).

Unit tests with a test double for the syscall handler (`RecordingSyscallsDouble`): no runner process is started.
What a well-formed batch asks is done in order with the right ids and bodies; a batch that does not add up (an
unknown kind, a missing id, a length past the body, bytes left over) voids the call like a failed one-way syscall —
it is run again with every syscall answered — and nothing after the fault is done. The end-to-end behaviour of
one-way syscalls is in test_engine_syscalls.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autopilot_sync.jsmodule import JsModuleRunner

pytestmark = pytest.mark.node


class RecordingSyscallsDouble:
    """A test double of the host's syscall handler: records each call; point scans find nothing."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, list[Any], bytes]] = []

    def handle(self, fn: str, args: list[Any], body: bytes) -> tuple[Any, bytes]:
        self.seen.append((fn, args, body))
        return ({"rows": []} if fn == "datastore_index_scan_point_bsatn" else None), b""


def _runner(tmp_path: Path) -> tuple[JsModuleRunner, RecordingSyscallsDouble]:
    double = RecordingSyscallsDouble()
    return JsModuleRunner(tmp_path / "never_started.js", double), double


def test_a_one_way_batch_is_done_in_order_with_its_ids_and_bodies(tmp_path: Path) -> None:
    runner, double = _runner(tmp_path)
    runner._answer_one_way({"t": "sysn", "ops": [0, 3, 2, 1, 5, 1, 2, 3, 4, 3]}, b"ab" + b"k" + b"xyz")
    assert double.seen == [
        ("datastore_insert_bsatn", [3], b"ab"),
        ("datastore_index_scan_point_bsatn", [5, "rows"], b"k"),
        ("datastore_update_bsatn", [3, 4], b"xyz"),
    ]
    assert runner._one_way_failed is None


@pytest.mark.parametrize(
    ("ops", "body", "done"),
    [
        ([0, 3, 2, 9, 3, 1], b"abc", 1),  # an unknown kind after one insert
        ([0, 3, 2, 2, 3], b"ab", 1),  # an update missing its length
        ([0, 3, 5], b"abc", 0),  # a length past the body
        ([0, True, 1], b"a", 0),  # an id that is not an integer
        ([0, 3, 1], b"ab", 1),  # a byte left over after the last syscall
        ("not a list", b"", 0),
    ],
)
def test_a_one_way_batch_that_does_not_add_up_voids_the_call(tmp_path: Path, ops: Any, body: bytes, done: int) -> None:
    runner, double = _runner(tmp_path)
    runner._answer_one_way({"t": "sysn", "ops": ops}, body)
    assert runner._one_way_failed == "malformed one-way frame from the runner"
    assert len(double.seen) == done


class FindingSyscallsDouble(RecordingSyscallsDouble):
    """A test double whose point scans find a row (a lookup the module was told found nothing)."""

    def handle(self, fn: str, args: list[Any], body: bytes) -> tuple[Any, bytes]:
        self.seen.append((fn, args, body))
        return ({"rows": [1]}, b"r") if fn == "datastore_index_scan_point_bsatn" else (None, b"")


def test_a_lookup_sent_as_empty_that_finds_a_row_stops_the_batch(tmp_path: Path) -> None:
    double = FindingSyscallsDouble()
    runner = JsModuleRunner(tmp_path / "never_started.js", double)
    runner._answer_one_way({"t": "sysn", "ops": [1, 5, 1, 0, 3, 1]}, b"kz")
    assert [fn for fn, _, _ in double.seen] == ["datastore_index_scan_point_bsatn"]
    assert runner._one_way_failed == "a lookup of index 5 sent as empty found rows"
