"""Host-side probe of `bench.call_trace`: `perf_counter_ns` stamps at each step of a call, in the host process only.

Loaded by the interpreter at start when this folder is on `PYTHONPATH` (the host child of `bench.call_trace`
inherits it); it does nothing unless `APSYNC_CALL_TRACE` names an output file and the process is `autopilot_sync
host`. It wraps the host's step functions in place (a benchmark's probe, never the product: nothing under `src/`
knows it exists) and writes `<step> <ns>` lines to `$APSYNC_CALL_TRACE.<pid>` at exit and every few thousand
stamps. `perf_counter_ns` is `CLOCK_MONOTONIC` on Linux, so the stamps compare with the benchmark process's.
"""

from __future__ import annotations

import atexit
import os
import sys
import time
from collections.abc import Callable
from typing import Any

_OUT = os.environ.get("APSYNC_CALL_TRACE")
_STAMPS: list[tuple[str, int]] = []
_DUMP_EVERY = 4000


def _dump() -> None:
    assert _OUT is not None
    with open(f"{_OUT}.{os.getpid()}", "w") as out:
        out.writelines(f"{step} {ns}\n" for step, ns in list(_STAMPS))


def _wrap(owner: Any, name: str, step: str) -> None:
    """Stamp `step` when `owner.name` is entered and `step_end` when it returns."""
    inner: Callable[..., Any] = getattr(owner, name)
    now = time.perf_counter_ns
    add = _STAMPS.append

    def stamped(*args: Any, **kwargs: Any) -> Any:
        add((step, now()))
        try:
            return inner(*args, **kwargs)
        finally:
            add((f"{step}_end", now()))
            if len(_STAMPS) % _DUMP_EVERY < 2:
                _dump()

    setattr(owner, name, stamped)


def _install() -> None:
    from autopilot_sync.host import commitlog, durability, engine, frame_mask, subscriptions, websocket

    _wrap(frame_mask._MaskCheckingParser, "feed_data", "host_read")  # bytes from the socket (data_received)
    _wrap(websocket.Connection, "receive_binary", "host_frame")  # the reader task hands the frame to the session
    _wrap(engine.HostEngine, "_begin_call", "host_reducer")  # the reducer, its commit and the log record's write
    _wrap(commitlog.CommitLog, "_start_flush", "host_flush_start")  # the hand-off to the fsync thread (or inline)
    _wrap(commitlog, "_fsync_timed", "host_fsync")  # the fsync itself, wherever it runs
    _wrap(commitlog.CommitLog, "_flush_done", "host_flush_done")  # back on the loop: everything after the fsync
    _wrap(durability.DurableCommits, "_deliver", "host_deliver")
    _wrap(subscriptions.SubscriptionManager, "on_commit", "host_subscriptions")  # the updates' evaluation
    _wrap(websocket.Connection, "send_encoded", "host_send")  # each write: the subscriber's update, the answer


if _OUT and "autopilot_sync" in sys.orig_argv and "host" in sys.orig_argv and not getattr(sys, "_apsync_traced", 0):
    sys._apsync_traced = 1  # type: ignore[attr-defined]
    atexit.register(_dump)
    _install()
