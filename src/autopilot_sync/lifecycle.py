"""How every service process announces readiness and waits to be stopped.

The `ready` line is a contract: `devtools/processes.py` (tests, benchmarks, `autopilot-sync up`) waits for it, so its
format is defined once, next to the pattern that reads it.
"""

from __future__ import annotations

import asyncio
import re
import signal

READY_PATTERN = re.compile(r"autopilot-sync (?P<service>[a-z-]+) ready: (?P<url>\S+)")


def announce_ready(service: str, url: str, **details: object) -> None:
    """Print `autopilot-sync <service> ready: <url> key=value ...` (flushed at once)."""
    extra = "".join(f" {name}={value}" for name, value in details.items())
    print(f"autopilot-sync {service} ready: {url}{extra}", flush=True)


async def until_stop_signal() -> None:
    """Return on the first SIGINT or SIGTERM, so the caller can shut down cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
