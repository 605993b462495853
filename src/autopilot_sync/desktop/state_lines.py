"""The headless desktop's output format, both ways: one `{"t": <unix seconds>, "state": {...}}` line per state.

`desktop --headless` writes these lines (`headless.JsonLinesPrinter`); `autopilot-sync up`'s users, the chaos
suite's desktop processes and the process tests read them back. Other lines (logs) may be interleaved, and the last
line of a killed process may be torn: readers skip both.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

STATE_LINE_PREFIX = '{"t":'
"""Every state line starts with this (the printer writes `t` first), so log lines are told apart without parsing."""


def format_state_line(state_body: str, at: float) -> str:
    """One output line (without the newline) for the JSON text `state_body` of a state seen at Unix time `at`."""
    return f'{STATE_LINE_PREFIX}{at:.3f},"state":{state_body}}}'


def parse_state_line(line: str) -> dict[str, Any] | None:
    """The state object of one output line; None for a log line or a torn one."""
    if not line.startswith(STATE_LINE_PREFIX):
        return None
    try:
        state = json.loads(line)["state"]
    except (ValueError, KeyError, TypeError):
        return None
    return state if isinstance(state, dict) else None


def read_states(lines: Iterable[str]) -> list[dict[str, Any]]:
    """Every state in `lines`, in order."""
    return [state for state in map(parse_state_line, lines) if state is not None]
