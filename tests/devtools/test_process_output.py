"""A service child's output is kept as a bounded tail: a chatty child never grows the parent's memory.

`./dev up` runs for days; before, every line any child printed stayed in `ServiceProcess.output` forever.
"""

from __future__ import annotations

import subprocess
import sys

from autopilot_sync.devtools.processes import OUTPUT_MAX_LINE_CHARS, watch_output

CHATTY = """
import sys
print("autopilot-sync chatty ready: http://127.0.0.1:1", flush=True)
for i in range(30000):
    print(f"line {i}")
sys.stdout.write("x" * 3_000_000 + "\\n")
print("last line")
"""


def test_a_chatty_child_keeps_only_a_bounded_tail_and_counts_what_was_dropped() -> None:
    child = subprocess.Popen([sys.executable, "-c", CHATTY], stdout=subprocess.PIPE, text=True)
    budget = OUTPUT_MAX_LINE_CHARS + 100_000  # the cut long line plus the newest short ones
    running = watch_output("chatty", child, max_chars=budget)
    assert running.wait_ready(30) == "http://127.0.0.1:1"
    assert child.wait(30) == 0
    assert running._reader is not None
    running._reader.join(30)
    lines = list(running.output)
    assert sum(len(line) for line in lines) <= budget + OUTPUT_MAX_LINE_CHARS // 10
    assert running.dropped_lines == 30_003 - len(lines) and running.dropped_lines > 20_000
    assert lines[-1] == "last line" and running.tail(1) == "last line"
    assert all(len(line) <= OUTPUT_MAX_LINE_CHARS + 40 for line in lines)
    long_line = lines[-2]
    assert long_line.startswith("x" * 100) and long_line.endswith("characters cut]")
    assert running.tail(3).splitlines()[0] == "line 29999"


def test_a_long_state_line_is_kept_whole() -> None:
    """A headless desktop's JSON state line with hundreds of streams is far longer than a log line; cut, it would
    not parse, and the suites reading every state a desktop printed would see none (a 20-stream state is ~6 KB)."""
    child = subprocess.Popen(
        [sys.executable, "-c", 'print("ready: http://127.0.0.1:1"); print("{" + "s" * 200_000 + "}")'],
        stdout=subprocess.PIPE,
        text=True,
    )
    running = watch_output("states", child)
    assert child.wait(30) == 0
    assert running._reader is not None
    running._reader.join(30)
    assert running.tail(1) == "{" + "s" * 200_000 + "}"
    assert running.dropped_lines == 0
