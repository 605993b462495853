"""Once warm, the host's start-up heap is out of the collector's full collections (`host/warm.py`).

A full (generation-2) collection walks every tracked object on the event loop's thread; before the freeze it walked
the ~90,000 objects of the start and the warm imports every time, a pause every commit in flight waited for. The
check runs in a fresh interpreter: a freeze in this test process would change every later test's collections.
"""

from __future__ import annotations

import json
import subprocess
import sys


def test_the_warm_up_freezes_the_start_up_heap_out_of_full_collections() -> None:
    script = (
        "import gc, json\n"
        "from autopilot_sync.host.warm import warm_in_background\n"
        "before = gc.get_freeze_count()\n"
        "warm_in_background(0.0).join(120)\n"
        "print(json.dumps({'before': before, 'after': gc.get_freeze_count(), 'tracked': len(gc.get_objects())}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=180)
    counts = json.loads(done.stdout)
    assert counts["before"] == 0
    # The SQL parser and the token libraries alone are tens of thousands of objects, all frozen; what is left for
    # a full collection is what came after (here: the few objects of the script itself).
    assert counts["after"] > 20_000
    assert counts["tracked"] < counts["after"] / 10


def test_the_warm_up_loads_the_sql_dialect_a_first_query_after_a_restart_would_load() -> None:
    script = (
        "import sys\n"
        "from autopilot_sync.host.warm import warm_in_background\n"
        "warm_in_background(0.0).join(120)\n"
        "print('sqlglot.dialects.postgres' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=180)
    assert done.stdout.strip() == "True", "the first resume after a restart would load the dialect itself"
