"""`EngineSyscalls` answers the byte-level ABI from a real engine datastore, with SpacetimeDB's errnos.

No Node here: the syscalls are called as the runner calls them (name, header arguments, BSATN body) against the
datastore of a real `HostEngine` serving the chat example module, inside a real `Transaction`. The end-to-end path
through the official library is `tests/jsmodule/test_engine_syscalls.py`.
"""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from autopilot_sync.examples.chat import module
from autopilot_sync.host import js_syscalls as errno
from autopilot_sync.host.caller import Caller
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.host.js_syscalls import EngineSyscalls
from autopilot_sync.host.transaction import Transaction
from autopilot_sync.jsmodule import SyscallRefusedError
from autopilot_sync.spacetime.values import ConnectionId, Identity

ALICE = Caller(Identity(0xA11CE), ConnectionId(9), {"sub": "alice"})


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[HostEngine]:
    engine = HostEngine(module, tmp_path, "chat", EngineConfig(fsync=False))
    await engine.start()
    yield engine
    await engine.stop()


@pytest.fixture
def sys(engine: HostEngine) -> EngineSyscalls:
    syscalls = EngineSyscalls(engine.module.definition(), engine.datastore, identity=Identity(0x0E))
    syscalls.begin(Transaction(engine.datastore), ALICE, "test")
    return syscalls


def person(person_id: int, name: str, age: int) -> bytes:
    raw = name.encode()
    return struct.pack("<QI", person_id, len(raw)) + raw + struct.pack("<I", age)


def text(value: str) -> bytes:
    return struct.pack("<I", len(value)) + value.encode()


def refused(sys: EngineSyscalls, fn: str, args: list[Any], body: bytes = b"") -> int:
    with pytest.raises(SyscallRefusedError) as refusal:
        sys.handle(fn, args, body)
    return refusal.value.code


def ids(sys: EngineSyscalls) -> tuple[int, int, int]:
    table, _ = sys.handle("table_id_from_name", ["person"], b"")
    by_id, _ = sys.handle("index_id_from_name", ["person_id_idx_btree"], b"")
    by_name, _ = sys.handle("index_id_from_name", ["person_name_idx_btree"], b"")
    return table, by_id, by_name


def scan(sys: EngineSyscalls, iterator: int, capacity: int = 1 << 16) -> list[bytes]:
    """Every batch of an iterator until its final (done) one."""
    batches = []
    while True:
        state, body = sys.handle("row_iter_bsatn_advance", [iterator, capacity], b"")
        batches.append(body)
        if state["done"]:
            return batches


def test_outside_a_call_every_datastore_syscall_is_not_in_transaction(sys: EngineSyscalls) -> None:
    sys.end()
    assert refused(sys, "table_id_from_name", ["person"]) == errno.NOT_IN_TRANSACTION
    assert sys.handle("identity", [], b"") == (str(0x0E), b"")  # the module's identity needs no transaction


def test_unknown_names_ids_and_iterators_are_their_errnos(sys: EngineSyscalls) -> None:
    assert refused(sys, "table_id_from_name", ["nope"]) == errno.NO_SUCH_TABLE
    assert refused(sys, "datastore_table_row_count", [99]) == errno.NO_SUCH_TABLE
    assert refused(sys, "index_id_from_name", ["nope_idx_btree"]) == errno.NO_SUCH_INDEX
    assert refused(sys, "datastore_index_scan_point_bsatn", [99], b"") == errno.NO_SUCH_INDEX
    assert refused(sys, "row_iter_bsatn_advance", [12345, 100]) == errno.NO_SUCH_ITER
    assert refused(sys, "row_iter_bsatn_close", [12345]) == errno.NO_SUCH_ITER


def test_procedure_syscalls_are_not_table_syscalls(sys: EngineSyscalls) -> None:
    # `JsModule` answers them (a procedure's transactions belong to the engine, not to one call's transaction).
    with pytest.raises(SyscallRefusedError, match="unknown syscall procedure_start_mut_tx") as refusal:
        sys.handle("procedure_start_mut_tx", [], b"")
    assert refusal.value.code == errno.HOST_CALL_FAILURE


def test_insert_writes_back_generated_ids_and_refuses_duplicates_and_bad_bytes(sys: EngineSyscalls) -> None:
    table, _, _ = ids(sys)
    assert sys.handle("datastore_insert_bsatn", [table], person(0, "ann", 30)) == (None, struct.pack("<Q", 1))
    assert sys.handle("datastore_insert_bsatn", [table], person(0, "bob", 31)) == (None, struct.pack("<Q", 2))
    assert refused(sys, "datastore_insert_bsatn", [table], person(0, "ann", 1)) == errno.UNIQUE_ALREADY_EXISTS
    assert refused(sys, "datastore_insert_bsatn", [table], b"\x01\x02") == errno.BSATN_DECODE_ERROR
    assert refused(sys, "datastore_insert_bsatn", [table], person(0, "cy", 1) + b"!") == errno.BSATN_DECODE_ERROR
    assert sys.handle("datastore_table_row_count", [table], b"") == ("2", b"")


def test_iterators_fill_whole_rows_flag_the_last_batch_and_ask_for_a_bigger_buffer(sys: EngineSyscalls) -> None:
    table, _, _ = ids(sys)
    rows = [person(0, name, 20) for name in ("ann", "bob", "cy")]
    for row in rows:
        sys.handle("datastore_insert_bsatn", [table], row)
    stored = [person(i + 1, name, 20) for i, name in enumerate(("ann", "bob", "cy"))]
    iterator, _ = sys.handle("datastore_table_scan_bsatn", [table], b"")
    assert sys.handle("row_iter_bsatn_advance", [iterator, 3], b"") == ({"too_small": len(stored[0])}, b"")
    batches = scan(sys, iterator, capacity=len(stored[0]) + len(stored[1]))
    assert batches == [stored[0] + stored[1], stored[2]]
    assert refused(sys, "row_iter_bsatn_advance", [iterator, 100]) == errno.NO_SUCH_ITER  # gone once done
    empty, _ = sys.handle("datastore_index_scan_point_bsatn", [ids(sys)[2]], text("nobody"))
    assert sys.handle("row_iter_bsatn_advance", [empty, 100], b"") == ({"done": True}, b"")


def test_a_scan_asked_with_rows_answers_small_results_inline_and_opens_no_iterator(sys: EngineSyscalls) -> None:
    table, by_id, by_name = ids(sys)
    for name in ("ann", "bob"):
        sys.handle("datastore_insert_bsatn", [table], person(0, name, 20))
    stored = [person(1, "ann", 20), person(2, "bob", 20)]
    rows = errno.WITH_ROWS
    assert sys.handle("datastore_table_scan_bsatn", [table, rows], b"") == (
        {"rows": [len(r) for r in stored]},
        b"".join(stored),
    )
    assert sys.handle("datastore_index_scan_point_bsatn", [by_name, rows], text("bob")) == (
        {"rows": [len(stored[1])]},
        stored[1],
    )
    assert sys.handle("datastore_index_scan_point_bsatn", [by_name, rows], text("nobody")) == ({"rows": []}, b"")
    start = end = b"\x00" + struct.pack("<Q", 1)  # Bound::Included(1) both ends
    found = sys.handle("datastore_index_scan_range_bsatn", [by_id, 0, 0, len(start), len(end), rows], start + end)
    assert found == ({"rows": [len(stored[0])]}, stored[0])
    assert refused(sys, "row_iter_bsatn_advance", [1, 100]) == errno.NO_SUCH_ITER  # nothing was left on the host
    big = "x" * (errno.INLINE_ROWS_MAX + 1)  # too big to inline: a host iterator, as without the flag
    sys.handle("datastore_insert_bsatn", [table], person(0, big, 20))
    iterator, _ = sys.handle("datastore_table_scan_bsatn", [table, rows], b"")
    assert isinstance(iterator, int)
    assert b"".join(scan(sys, iterator, 1 << 20)) == b"".join([*stored, person(3, big, 20)])


def test_range_scans_decode_the_librarys_bounds(sys: EngineSyscalls) -> None:
    table, by_id, _ = ids(sys)
    for name in ("ann", "bob", "cy", "dee"):
        sys.handle("datastore_insert_bsatn", [table], person(0, name, 20))

    def names(start: bytes, end: bytes) -> list[str]:
        iterator, _ = sys.handle("datastore_index_scan_range_bsatn", [by_id, 0, 0, len(start), len(end)], start + end)
        out = b"".join(scan(sys, iterator))
        found, offset = [], 0
        while offset < len(out):
            (length,) = struct.unpack_from("<I", out, offset + 8)
            found.append(out[offset + 12 : offset + 12 + length].decode())
            offset += 16 + length
        return found

    def bound(tag: int, value: int | None = None) -> bytes:
        return bytes([tag]) + (struct.pack("<Q", value) if value is not None else b"")

    assert names(bound(0, 2), bound(0, 3)) == ["bob", "cy"]
    assert names(bound(1, 2), bound(2)) == ["cy", "dee"]
    assert names(bound(2), bound(1, 2)) == ["ann"]
    assert names(bound(0, 3), b"") == ["cy"]  # an empty end repeats the start (a scalar last term)
    args = [by_id, 0, 0, 1, 1]
    assert refused(sys, "datastore_index_scan_range_bsatn", args, b"\x07\x02") == errno.BSATN_DECODE_ERROR
    assert refused(sys, "datastore_index_scan_range_bsatn", [by_id, 0, 1, 1, 1], b"\x02\x02") == (
        errno.BSATN_DECODE_ERROR  # prefix_elems would leave no column for the range
    )


def test_update_by_unique_index_and_deletes(sys: EngineSyscalls) -> None:
    table, by_id, by_name = ids(sys)
    for name in ("ann", "bob"):
        sys.handle("datastore_insert_bsatn", [table], person(0, name, 20))
    assert sys.handle("datastore_update_bsatn", [table, by_id], person(1, "ann", 40)) == (None, struct.pack("<Q", 1))
    assert refused(sys, "datastore_update_bsatn", [table, by_id], person(7, "x", 1)) == errno.NO_SUCH_ROW
    assert refused(sys, "datastore_update_bsatn", [table, by_id], person(1, "bob", 1)) == errno.UNIQUE_ALREADY_EXISTS
    store = sys._stores[table]
    assert sorted(store.rows.values()) == [(1, "ann", 40), (2, "bob", 20)]  # the failed update changed nothing
    assert sys.handle("datastore_delete_by_index_scan_point_bsatn", [by_name], text("bob")) == (1, b"")
    relation = struct.pack("<I", 2) + person(1, "ann", 40) + person(5, "ghost", 1)
    assert sys.handle("datastore_delete_all_by_eq_bsatn", [table], relation) == (1, b"")
    sys.handle("datastore_insert_bsatn", [table], person(0, "cy", 1))
    assert sys.handle("datastore_clear", [table], b"") == ("1", b"")
    assert not store.rows


def test_jwt_payload_is_the_callers_own_claims_and_empty_otherwise(sys: EngineSyscalls, engine: HostEngine) -> None:
    _, payload = sys.handle("get_jwt_payload", [str(ALICE.connection_id.value)], b"")  # type: ignore[union-attr]
    assert json.loads(payload) == {"sub": "alice"}
    assert sys.handle("get_jwt_payload", ["12345"], b"") == (None, b"")
    sys.begin(Transaction(engine.datastore), Caller(Identity(0x0E)), "internal")
    assert sys.handle("get_jwt_payload", ["0"], b"") == (None, b"")
