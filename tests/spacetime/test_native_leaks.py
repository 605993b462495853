"""The C code's error paths give back every reference and every block they take (`_bsatn.c`, `_rowlist.c`).

A refcount leak on an error path is not a crash, it is memory that grows with every hostile frame a client sends.
Each path here runs a warm-up, then two equal batches; the second batch may not grow the interpreter's allocated
blocks (`sys.getallocatedblocks`, pymalloc's count: an object leaked per call shows as one block or more per
call), nor the reference counts of the objects a leak would hold (the singletons, the small ints a decoder returns
from its cache, the classes values are built from, the inputs and the program itself), which no allocation
would reveal. There is no debug build of CPython here (`sys.gettotalrefcount`), so these stand in for it.
"""

from __future__ import annotations

import contextlib
import gc
import struct
import sys
from array import array
from collections.abc import Callable
from typing import Any

import pytest

from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn, bsatn_check
from autopilot_sync.spacetime.values import ConnectionId, Identity, SumValue, TimeDuration, Timestamp

pytestmark = pytest.mark.skipif(
    not (bsatn.NATIVE and bsatn_check.NATIVE), reason="the C extensions were not compiled here (Python runs)"
)

BATCH = 400

ROW = at.product(
    ("n", at.U32),
    ("s", at.STRING),
    ("b", at.BYTES),
    ("o", at.option(at.I128)),
    ("e", at.sum_type(("a", at.UNIT), ("b", at.array(at.STRING)))),
    ("t", at.TIMESTAMP),
    ("i", at.IDENTITY),
    ("c", at.CONNECTION_ID),
    ("d", at.TIME_DURATION),
    ("l", at.array(at.array(at.U16))),
)
GOOD = (
    7,
    "é",
    b"\x00",
    -5,
    SumValue(1, ["x", "yz"]),
    Timestamp(3),
    Identity(9),
    ConnectionId(4),
    TimeDuration(2),
    [[1, 2], []],
)


def _codec() -> bsatn.NativeCodec:
    found = bsatn.codec(ROW)
    assert isinstance(found, bsatn.NativeCodec)
    return found


def _swallow(call: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        with contextlib.suppress(Exception):  # the error is the path under test; its type is other tests' business
            call()

    return run


def _census(extra: tuple[Any, ...]) -> array[int]:
    """The watched objects' reference counts, kept in an array: a list would hold references to small ints."""
    watched = (
        None,
        True,
        False,
        (),
        *range(-5, 257),
        SumValue,
        Identity,
        ConnectionId,
        Timestamp,
        TimeDuration,
        *extra,
    )
    return array("q", (sys.getrefcount(obj) for obj in watched))


def _growth(path: Callable[[], None], extra: tuple[Any, ...]) -> tuple[int, list[tuple[int, int]]]:
    for _ in range(BATCH):  # warm-up: lazily built Python twins, caches, free lists
        path()
    gc.collect()
    gc.disable()
    try:
        counts = _census(extra)  # before the block count: the census's own ints are not counted as growth
        blocks = array("q", [sys.getallocatedblocks()])  # an array: 0 (PYTHONMALLOC=malloc) is a watched small int
        for _ in range(BATCH):
            path()
        blocks.append(sys.getallocatedblocks())
        counts_after = _census(extra)
    finally:
        gc.enable()
    changed = [
        (i, after - before)
        for i, (before, after) in enumerate(zip(counts, counts_after, strict=True))
        if after != before
    ]
    return blocks[1] - blocks[0], changed


def _paths() -> dict[str, tuple[Callable[[], None], tuple[Any, ...]]]:
    codec = _codec()
    program = codec.program
    data = bsatn.python_codec(ROW).encode(GOOD)
    bad_utf8 = bytearray(data)
    bad_utf8[data.index("é".encode())] = 0xFF
    bad_sum = data[:4] + b"\x05" + data[5:]
    huge_array = data[:-9] + struct.pack("<I", 0xFFFFFFFF)
    wrong = list(GOOD)
    wrong[9] = [[1, 1 << 20]]
    wrong_sum = list(GOOD)
    wrong_sum[4] = SumValue(7, ())
    surrogate = list(GOOD)
    surrogate[1] = "\ud800"
    pinned = bytearray()
    view = memoryview(pinned)
    from autopilot_sync.spacetime import _bsatn, _rowlist

    too_deep = _too_deep()
    units = bsatn.codec(at.product(("u", at.array(at.UNIT)), ("v", at.array(at.UNIT))))
    units_program = units.program  # type: ignore[attr-defined]
    two_units = struct.pack("<II", 1, 1)
    layout = [4, -1, -2, 8]
    rows = struct.pack("<I", 1) + struct.pack("<I", 1) + b"\xff" + struct.pack("<I", 0) + b"\x00" * 8
    return {
        "decode: the whole row, fine": (lambda: program.decode(data, 0), (program, data)),
        "decode: truncated (fallback raises)": (_swallow(lambda: program.decode(data[:-3], 0)), (program,)),
        "decode: bad UTF-8": (_swallow(lambda: program.decode(bytes(bad_utf8), 0)), (program,)),
        "decode: bad sum tag": (_swallow(lambda: program.decode(bad_sum, 0)), (program,)),
        "decode: array length 2^32-1": (_swallow(lambda: program.decode(huge_array, 0)), (program,)),
        "decode: offset past the end": (_swallow(lambda: program.decode(data, len(data) + 1)), (program, data)),
        "decode: not a buffer": (_swallow(lambda: program.decode("text", 0)), (program,)),
        "decode: a budget handed down, written back": (
            lambda: units_program.decode(two_units, 0, [1000]),
            (units_program, two_units),
        ),
        "decode: over the budget handed down (fallback raises)": (
            _swallow(lambda: units_program.decode(two_units, 0, [1])),
            (units_program, two_units),
        ),
        "decode: a budget C does not read (fallback runs)": (
            _swallow(lambda: units_program.decode(two_units, 0, (5,))),
            (units_program, two_units),
        ),
        "encode: fine": (lambda: program.encode(GOOD), (program,)),
        "encode: out of range deep inside": (_swallow(lambda: program.encode(tuple(wrong))), (program,)),
        "encode: sum tag out of range": (_swallow(lambda: program.encode(tuple(wrong_sum))), (program,)),
        "encode: surrogate": (_swallow(lambda: program.encode(tuple(surrogate))), (program,)),
        "encode: wrong arity": (_swallow(lambda: program.encode(GOOD[:3])), (program,)),
        "encode_into: a pinned bytearray": (
            _swallow(lambda: program.encode_into(pinned, GOOD)),
            (program, pinned, view),
        ),
        "Program: a bad kind deep inside": (
            _swallow(lambda: _bsatn.Program((18, ((0,), (17, 4, 1, (18, ((99,),))))), None, None)),
            (),
        ),
        # built once: a nesting this deep is freed late (CPython's trashcan), which reads as growth per call
        "Program: deeper than MAX_DEPTH": (_swallow(lambda: _bsatn.Program(too_deep, None, None)), (too_deep,)),
        "Program: a kind that is not an int": (_swallow(lambda: _bsatn.Program((18, ((0,), ("x",))), None, None)), ()),
        "check: a row that does not decode": (lambda: _rowlist.check(rows, [0], layout), (rows,)),
        "check: starts out of order": (lambda: _rowlist.check(rows, [3, 0], layout), (rows,)),
        "check: a start that is not an int": (_swallow(lambda: _rowlist.check(rows, [0, "1"], layout)), (rows,)),
        "check: a layout too wide": (_swallow(lambda: _rowlist.check(rows, [0], [0] * 300)), (rows,)),
        "pack_run: a span outside": (
            _swallow(lambda: _rowlist.pack_run(b"abc", b"p", array("Q", [1]), array("Q", [0]), array("Q", [9]))),
            (),
        ),
        "pack_run: arrays of another width": (
            _swallow(lambda: _rowlist.pack_run(b"abc", b"p", array("I", [1, 1]), array("Q", [0]), array("Q", [1]))),
            (),
        ),
    }


def _too_deep() -> tuple[Any, ...]:
    desc: tuple[Any, ...] = (0,)
    for _ in range(80):
        desc = (19, desc)
    return (18, (desc,))


PATHS = list(_paths()) if bsatn.NATIVE and bsatn_check.NATIVE else []


@pytest.mark.parametrize("name", PATHS)
def test_an_error_path_run_again_and_again_holds_no_more_memory_or_references(name: str) -> None:
    path, extra = _paths()[name]
    counted = sys.getallocatedblocks() != 0  # 0 under PYTHONMALLOC=malloc (the sanitizer run): references only
    attempts = []
    for _ in range(3):  # a leak grows every batch; another thread's allocations (in a full suite) need not
        blocks, changed = _growth(path, extra)
        blocks = blocks if counted else 0
        # a leaked object per call is >= BATCH blocks; a few may come and go (free lists, the method cache)
        if blocks < BATCH // 4 and not changed:
            return
        attempts.append((blocks, changed))
    pytest.fail(f"every batch of {BATCH} calls grew (blocks, (census index, reference growth)): {attempts}")
