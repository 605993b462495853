"""After the host is ready, import in the background what its first query and first token will need.

The host's start leaves the SQL parser (sqlglot) and token checking (joserfc) out, so that `ready` comes early
(docs/performance.md "Start-up"); but then the first subscription after a start paid for importing sqlglot (~0.3 s
of CPU on an idle machine, over a second under load) inside its own answer: a client resuming right after a host
restart waited for an import, not for its rows (row (g)'s catch-up). A daemon thread started with `ready` does
those imports at once: the SQL parser and its dialect (a first subscription's), then the token libraries and
libsecp256k1 (a first connection's), then the v1 codec. A delay before them (0.25 s until session 8) left the host
idle while a client reconnecting at `ready` arrived, and its first resume then waited for the imports still running
(on a 200,000-event store, host CPU in that resume's window ~100-190 ms against ~10 ms once warm: docs/performance.md
"Round 6 — restart1m"). Python's import lock makes a request that needs a module mid-import wait for that one
import, never import it twice; a failed import here is left for the request to raise.

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

from autopilot_sync import dataclass_methods

log = logging.getLogger(__name__)

#: Modules a first query needs and the start does not import: the SQL parser first, the largest import a first
#: resume can wait for (a reconnecting client's token check imports the token libraries on the loop itself when it
#: comes before them, in parallel).
WARM_MODULES = ("autopilot_sync.host.sql.select",)
#: Imported after the first parse: the token libraries, libsecp256k1 (the sync module's `client_connected` checks the
#: caller's Nostr key with it), then the v1 codec (only a v1 client needs it) and the Prometheus text encoder.
WARM_LATER = (
    "joserfc.jwk",
    "joserfc.jws",
    "joserfc.jwt",
    "joserfc.errors",
    "coincurve",
    "autopilot_sync.host.session_v1",
    "prometheus_client.exposition",  # the `/metrics` encoder (`host/start.py` imports the metric classes alone)
)


#: Parsed once after the imports: sqlglot loads its dialect (and builds its tokenizer's tables) at the first parse, a
#: third of a first resume's host time after a restart (py-spy, row (g)'s catch-up), so it is done here, idle.
WARM_SQL = "SELECT * FROM warm WHERE stream_id = 'x' AND seq > 0"

#: How long after `ready` the imports begin: at once (see the module docstring).
DELAY_SECONDS = 0.0


def _import(names: tuple[str, ...]) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # the request that needs it raises the real error
            log.debug("warm import of %s failed", name, exc_info=True)


def _import_all(delay: float) -> None:
    # The start's dataclasses are all made: their methods' code goes to the cache the next start loads (a no-op
    # unless `launch.py` installed it; docs/performance.md "Round 7 — startup4").
    dataclass_methods.finish()
    if delay > 0:
        time.sleep(delay)
    _import(WARM_MODULES)
    try:
        from autopilot_sync.host.sql.parse import parse_select

        parse_select(WARM_SQL)
    except Exception:  # the first query raises the real error
        log.debug("warm parse failed", exc_info=True)
    _import(WARM_LATER)
    gc.freeze()


def warm_in_background(delay: float = DELAY_SECONDS) -> threading.Thread:
    """Start (and return) the daemon thread importing `WARM_MODULES`, parsing `WARM_SQL` and importing `WARM_LATER`
    (after `delay` seconds), then freezing the heap built so far out of the collector's full collections."""
    thread = threading.Thread(target=_import_all, args=(delay,), name="warm-imports", daemon=True)
    thread.start()
    return thread
