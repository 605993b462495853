"""Keep `bench/call_trace.py` honest: events are cut at each `t0` and a real run stamps every host step.

Nothing here times anything: the real run checks which steps were stamped, never how long they took.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.call_trace import REPO_ROOT, segments, timeline

HOST_STEPS = (
    "host_read",
    "host_frame",
    "host_reducer",
    "host_flush_start",
    "host_fsync",
    "host_flush_done",
    "host_subscriptions",
    "host_send",
    "host_send#2",
)


def test_each_event_runs_from_its_t0_and_repeated_steps_are_numbered() -> None:
    stamps = [
        (5, "host_read"),  # before the window's first t0: no event owns it
        (10, "t0"),
        (12, "host_send"),
        (15, "host_send"),
        (20, "receipt"),
        (30, "t0"),
        (31, "host_send"),  # no receipt: the event is left out
        (40, "t0"),
        (44, "receipt"),
        (99, "receipt"),  # outside the window
    ]
    offsets, orders = timeline(stamps, 0, 50)
    assert offsets == {
        "t0": [0.0, 0.0],
        "host_send": [0.002],
        "host_send#2": [0.005],
        "receipt": [0.01, 0.004],
    }
    assert orders == {"t0 host_send host_send#2 receipt": 1, "t0 receipt": 1}


def test_segments_are_the_hops_between_consecutive_steps() -> None:
    assert segments({"t0": 0.0, "host_read": 150.0, "receipt": 900.5}) == {
        "t0 -> host_read": 150.0,
        "host_read -> receipt": 750.5,
    }


def test_a_real_run_stamps_every_step_of_the_host_and_the_client_in_both_phases() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.call_trace", "--events", "5", "--rounds", "1", "--rate", "50"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    report = json.loads(done.stdout)
    for phase in ("open", "closed"):
        assert report[phase]["events"] == 5
        steps = report[phase]["median_us_from_t0"]
        for step in ("client_write", *HOST_STEPS, "subscriber_frame", "receipt", "answer"):
            assert step in steps, (phase, step)
        assert steps["host_fsync"] < steps["host_flush_done"] < steps["host_send"] < steps["receipt"]
        assert len(report[phase]["segments_us"]) == len(steps) - 1
