"""How every service process announces readiness and waits to be stopped.

The `ready` line is a contract: `devtools/processes.py` (tests, benchmarks, `autopilot-sync up`) waits for it, so its
format is defined once, next to the pattern that reads it.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Callable

READY_PATTERN = re.compile(r"autopilot-sync (?P<service>[a-z-]+) ready: (?P<url>\S+)")


_STOPS: dict[asyncio.AbstractEventLoop, asyncio.Event] = {}


def announce_ready(service: str, url: str, **details: object) -> None:
    """Print `autopilot-sync <service> ready: <url> key=value ...` (flushed at once).

    The stop signals are watched before the line goes out: whoever reads `ready` may send SIGTERM at once, and it
    must stop the service cleanly (exit 0), not kill it with Python's default action.
    """
    _watch_stop_signals()
    extra = "".join(f" {name}={value}" for name, value in details.items())
    print(f"autopilot-sync {service} ready: {url}{extra}", flush=True)


def _watch_stop_signals() -> asyncio.Event | None:
    """The running loop's stop event, its SIGINT/SIGTERM handlers installed on first use (None outside a loop)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    stop = _STOPS.get(loop)
    if stop is None:
        stop = _STOPS[loop] = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def until_stop_signal() -> None:
    """Return on the first SIGINT or SIGTERM (also one that came since `announce_ready`), to shut down cleanly."""
    loop = asyncio.get_running_loop()
    stop = _watch_stop_signals()
    assert stop is not None  # inside a running loop
    try:
        await stop.wait()
    finally:
        _STOPS.pop(loop, None)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (a dependency off Windows), else None: asyncio's own.

    Why: a service's fixed cost per call is largely event-loop plumbing (frame reads, socket writes, wake-ups). On
    the host, uvloop cut the one-subscriber publish -> receipt p50 ~20% and raised unbatched durable publish ~12%;
    on the SDK's side of a call (the runtime's producer, the benchmark's client) it cut the client's CPU per
    unbatched call ~14% (docs/performance.md, "Round 5 — sdkcall"). Services pass it to `asyncio.Runner`.
    """
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
