"""What the sanitizer run and the fuzz found in the C code at the trust boundary, one regression test each.

Found by `scripts/sanitize-native.sh` (AddressSanitizer + UBSan over tests/spacetime/test_native_fuzz.py); these
run in the normal suite, on the normal build, so each stays fixed without the sanitizer.
"""

from __future__ import annotations

import struct
from array import array
from typing import Any

import pytest

from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime import bsatn, bsatn_check

pytestmark = pytest.mark.skipif(
    not (bsatn.NATIVE and bsatn_check.NATIVE), reason="the C extensions were not compiled here (Python runs)"
)


# _rowlist.check read its layout through PySequence_Fast, which hands back a list itself, not a copy; an item's
# `__index__` (Python code) could empty that list while C held a pointer into it: a segfault (or a read of freed
# memory, under ASan a heap-use-after-free). The layout is now read from a tuple of its items.


class _ShrinksItsList:
    """An index whose `__index__` empties the list it sits in (and fills it again, longer): the list's items are
    freed, and its storage moved, while C reads it."""

    def __init__(self, value: int, holder: list[Any]) -> None:
        self.value, self.holder = value, holder

    def __index__(self) -> int:
        self.holder.clear()
        self.holder.extend([0] * 1000)
        return self.value


def _mutating_sequence(values: list[int]) -> list[Any]:
    holder: list[Any] = []
    holder.extend([_ShrinksItsList(values[0], holder), *values[1:]])
    return holder


def test_row_list_arguments_that_change_under_their_own_index_are_read_as_they_were() -> None:
    assert bsatn_check._native_check is not None
    check = bsatn_check._native_check
    data = b"abcdefgh" * 3
    assert check(data, [0, 8, 16], _mutating_sequence([8])) == [b"abcdefgh"] * 3
    assert check(data, [0, 8, 16], _mutating_sequence([4, 4])) == [b"abcdefgh"] * 3
    assert check(data, [0, 8, 16], _mutating_sequence([4, -1, 4])) is None
    with pytest.raises(TypeError):  # starts are read as ints only: no `__index__` (no Python code) runs there
        check(data, _mutating_sequence([0, 8, 16]), [8])


# _rowlist.pack_run read its u64 arrays through `uint64_t *` casts of the buffers; a memoryview slice cast to "Q"
# starts at any address, and a misaligned load is undefined behaviour (UBSan: "load of misaligned address"). The
# arrays are now read with memcpy. (The same commit bounds the run's total size by PY_SSIZE_T_MAX before it is
# added up; reaching that needs spans of more than 2^63 bytes, so no test here makes it overflow.)


def _pack_reference(buf: bytes, prefix: bytes, seqs: list[int], spans: list[tuple[int, int]]) -> Any:
    rows = [
        prefix + struct.pack("<Q", seq) + buf[begin:finish] for seq, (begin, finish) in zip(seqs, spans, strict=True)
    ]
    if len({len(row) for row in rows}) <= 1:
        return b"".join(rows), len(rows[0]) if rows else 0
    starts = [sum(len(row) for row in rows[:k]) for k in range(len(rows))]
    return b"".join(rows), tuple(starts)


def test_packing_a_run_reads_arrays_at_any_alignment_and_refuses_ones_of_the_wrong_width() -> None:
    from autopilot_sync.spacetime._rowlist import pack_run

    buf, prefix = b"0123456789", b"p"
    seqs, begins, finishes = array("Q", [1, 2]), array("Q", [0, 4]), array("Q", [3, 10])
    expected = _pack_reference(buf, prefix, [1, 2], [(0, 3), (4, 10)])
    for shift in range(1, 8):  # each array's first element at an odd address
        views = [memoryview(b"\x00" * shift + a.tobytes())[shift:].cast("Q") for a in (seqs, begins, finishes)]
        assert pack_run(buf, prefix, *views) == expected
    for wrong in (array("I", [1, 2, 3, 4]), b"\x00" * 16, array("Q", [1])):
        with pytest.raises(ValueError):
            pack_run(buf, prefix, wrong, begins, finishes)
    with pytest.raises(TypeError):
        pack_run(buf, prefix, [1, 2], begins, finishes)  # type: ignore[arg-type]


# _bsatn's Program.decode walked any buffer's bytes, while the Python decoder behind it counts `len(data)` in items:
# given an array("I") (or a memoryview cast to a wider format) C decoded a value where Python refuses the input as
# truncated, so the answer depended on whether C was compiled. C now walks only buffers of one-byte items and hands
# anything else to the Python decoder, whose answer (or error) it is.


def _decoded(codec: bsatn.Codec, data: Any, offset: int = 0) -> tuple[str, Any]:
    try:
        value, end = codec.decode_prefix(data, offset)
    except Exception as exc:  # the refusal is compared, by type and text
        return "error", (type(exc), str(exc))
    return "value", (repr(value), end)


def test_a_buffer_of_wider_items_is_decoded_as_the_python_decoder_reads_it() -> None:
    ty = at.product(("n", at.U32), ("s", at.STRING))
    native, python = bsatn.codec(ty), bsatn.python_codec(ty)
    assert isinstance(native, bsatn.NativeCodec)
    data = python.encode((7, "é"))
    for offset in (True, False, -1, -(1 << 70), 1 << 70, 1 << 62, len(data), len(data) + 1):
        assert _decoded(native, data, offset) == _decoded(python, data, offset)
    strided = memoryview(bytes(range(40)))[::2]  # not contiguous: no simple buffer
    as_words = memoryview(data + b"\x00\x00").cast("H")
    for source in (strided, array("I", [7, 2, 0xA9C3]), as_words, "text", None, 5):
        assert _decoded(native, source) == _decoded(python, source)
    assert _decoded(native, memoryview(data).cast("B")) == ("value", (repr((7, "é")), len(data)))
