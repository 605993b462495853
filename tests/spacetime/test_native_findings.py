"""What the sanitizer run and the fuzz found in the C code at the trust boundary, one regression test each.

Found by `scripts/sanitize-native.sh` (AddressSanitizer + UBSan over tests/spacetime/test_native_fuzz.py); these
run in the normal suite, on the normal build, so each stays fixed without the sanitizer.
"""

from __future__ import annotations

from typing import Any

import pytest

from autopilot_sync.spacetime import bsatn_check

pytestmark = pytest.mark.skipif(not bsatn_check.NATIVE, reason="_rowlist.c was not compiled here (Python runs)")


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
