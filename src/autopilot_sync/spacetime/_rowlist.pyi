"""Type stub of the row-list work in C (`_rowlist.c`, built by `hatch_build.py`)."""

from collections.abc import Sequence

def check(data: bytes, starts: Sequence[int], layout: Sequence[int], /) -> list[bytes] | None: ...
def pack_run(
    buf: bytes | bytearray | memoryview, prefix: bytes, seqs: object, begins: object, finishes: object, /
) -> tuple[bytes, int | tuple[int, ...]]: ...
