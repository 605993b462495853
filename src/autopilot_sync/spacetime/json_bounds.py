"""Bounds on JSON input checked before (and while) parsing: nesting depth and the length of a number.

`json.loads` recurses per nesting level and raises `RecursionError` on input a few thousand levels deep (after
burning the stack), and it converts integers of any length, raising a plain `ValueError` past 4300 digits; code that
walks the parsed value afterwards recurses again. Untrusted JSON (reducer arguments over HTTP, token headers and
claims) goes through `bounded_loads`, which refuses such input up front with a `JsonBoundsError` saying which bound:
the depth is measured by a scan of brackets outside strings (only when the text holds more brackets than the bound,
so ordinary input pays one `count`), and numbers are checked as the parser meets them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

#: Deepest nesting of arrays and objects accepted.
MAX_JSON_DEPTH = 64
#: Longest number accepted, in characters (a u256 or i256 needs 78 digits).
MAX_NUMBER_CHARS = 100

# a JSON string (skipped whole, escapes included) or one bracket
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


class JsonBoundsError(ValueError):
    """JSON input over one of the bounds: `expected` names the bound, `found` what the input has instead."""

    def __init__(self, expected: str, found: str) -> None:
        self.expected = expected
        self.found = found
        super().__init__(f"expected {expected}, got {found}")


def check_depth(text: str, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse `text` if its arrays and objects nest deeper than `max_depth` (brackets inside strings do not count)."""
    if text.count("[") + text.count("{") <= max_depth:
        return
    depth = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > max_depth:
                raise JsonBoundsError(f"JSON nested at most {max_depth} levels deep", "deeper nesting")
        elif token in "]}":
            depth -= 1


def _number_hook(convert: Callable[[str], Any], max_chars: int) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        if len(text) > max_chars:
            raise JsonBoundsError(f"JSON numbers of at most {max_chars} characters", f"a number of {len(text)}")
        return convert(text)

    return parse


def bounded_loads(
    text: str | bytes,
    *,
    max_depth: int = MAX_JSON_DEPTH,
    max_number_chars: int = MAX_NUMBER_CHARS,
    **kwargs: Any,
) -> Any:
    """`json.loads` that raises JsonBoundsError for input over the bounds (other errors as `json.loads` raises them)."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8")  # UnicodeDecodeError is a ValueError, as json.loads would raise
    check_depth(text, max_depth)
    return json.loads(
        text,
        parse_int=_number_hook(int, max_number_chars),
        parse_float=_number_hook(float, max_number_chars),
        **kwargs,
    )
