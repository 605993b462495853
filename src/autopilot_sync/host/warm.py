"""After the host is ready, import in the background what its first query and first token will need.

The host's start leaves the SQL parser (sqlglot) and token checking (joserfc) out, so that `ready` comes early
(docs/performance.md "Start-up"); but then the first subscription after a start paid for importing sqlglot (~0.3 s
of CPU on an idle machine, over a second under load) inside its own answer: a client resuming right after a host
restart waited for an import, not for its rows (row (g)'s catch-up). A daemon thread started with `ready` does
those imports while the host is idle, after `DELAY_SECONDS` (what the start imports before `ready` stays what
`tests/architecture/test_start_imports.py` reads, and whoever waits for `ready` gets the first moments). Python's
import lock makes a request that needs a module mid-import wait for that one import, never import it twice; a
failed import here is left for the request to raise.

Then the thread freezes the collector's view of the heap (`gc.freeze`): the modules, classes and functions the start
and these imports built (~90,000 objects) are never garbage, yet every full (generation-2) collection walked them
all, on the event loop's thread, 40-80 ms under load, while every commit waited (bench row (h): one such pause put
~100 ms on the commit p99; docs/performance.md "Round 4 — stall"). Frozen objects are still freed by their reference
counts; only a cycle among them that becomes garbage later (say, of a connection open at that moment) is never
collected, a bounded one-off cost.
"""

from __future__ import annotations

import gc
import importlib
import logging
import threading
import time

log = logging.getLogger(__name__)

#: Modules a first query or token needs and the start does not import.
WARM_MODULES = (
    "autopilot_sync.host.sql.select",
    "autopilot_sync.host.session_v1",
    "joserfc.jwk",
    "joserfc.jws",
    "joserfc.jwt",
    "joserfc.errors",
)


#: Parsed once after the imports: sqlglot loads its dialect (and builds its tokenizer's tables) at the first parse, a
#: third of a first resume's host time after a restart (py-spy, row (g)'s catch-up), so it is done here, idle.
WARM_SQL = "SELECT * FROM warm WHERE stream_id = 'x' AND seq > 0"

#: How long after `ready` the imports begin.
DELAY_SECONDS = 0.25


def _import_all(delay: float) -> None:
    time.sleep(delay)
    for name in WARM_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # the request that needs it raises the real error
            log.debug("warm import of %s failed", name, exc_info=True)
    try:
        from autopilot_sync.host.sql.parse import parse_select

        parse_select(WARM_SQL)
    except Exception:  # the first query raises the real error
        log.debug("warm parse failed", exc_info=True)
    gc.freeze()


def warm_in_background(delay: float = DELAY_SECONDS) -> threading.Thread:
    """Start (and return) the daemon thread importing `WARM_MODULES` after `delay` seconds, then freezing the heap
    built so far out of the collector's full collections."""
    thread = threading.Thread(target=_import_all, args=(delay,), name="warm-imports", daemon=True)
    thread.start()
    return thread
