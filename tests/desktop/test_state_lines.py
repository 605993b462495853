"""The headless output format has one writer and one reader: what the printer writes, `read_states` gives back."""

from __future__ import annotations

import io

from autopilot_sync.desktop.headless import JsonLinesPrinter, state_json
from autopilot_sync.desktop.screenshots import backing_off_state, live_state
from autopilot_sync.desktop.state_lines import parse_state_line, read_states


def test_the_reader_gives_back_every_state_the_printer_wrote_skipping_logs_and_a_torn_last_line() -> None:
    states = [live_state(), backing_off_state()]
    out = io.StringIO()
    printer = JsonLinesPrinter(out)
    for state in states:
        printer(state)
    lines = out.getvalue().splitlines()
    mixed = ["WARNING something logged", lines[0], "", lines[1], lines[1][: len(lines[1]) // 2]]
    assert read_states(mixed) == [state_json(state) for state in states]
    assert parse_state_line("WARNING x") is None
    assert parse_state_line('{"t": 1, "state": [1]}') is None
