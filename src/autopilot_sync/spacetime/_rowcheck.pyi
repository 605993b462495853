"""Type stub of the compiled row-list checker (`_rowcheck.c`, built by `hatch_build.py`)."""

from collections.abc import Sequence

def check(data: bytes, starts: Sequence[int], layout: Sequence[int], /) -> list[bytes] | None: ...
