"""aiohttp's default client TLS contexts, given their CA certificates when a client first needs them.

`aiohttp.connector` builds two `SSLContext`s when it is imported (its default verified and unverified client
contexts) and loads the system CA bundle into both: OpenSSL 3.0 parses the whole bundle each time, ~0.1 s of CPU
apiece, a seventh of the host's start (docs/performance.md "Round 4 — startup"). The package's `__init__` imports
its client, so any `from aiohttp import web` pays it. The host serves with aiohttp; its one client request is the
OIDC key fetch of a trusted issuer (`auth/oidc.py`), which may never happen.

So the host imports aiohttp through `import_aiohttp_deferring_client_tls`: while aiohttp is imported, an
`SSLContext`'s `set_default_verify_paths` is recorded instead of run, and `load_client_tls` runs the recorded calls
on the same context objects. The OIDC fetch calls it (off the event loop) before its first request, so no client
request is ever made with a context lacking its CA certificates; until then the contexts are only incomplete,
which fails closed (an HTTPS peer would not verify), never open. Anything that imported aiohttp before (tests, other
services) already has complete contexts and nothing is recorded.
"""

from __future__ import annotations

import ssl
import sys
import threading
from collections.abc import Callable

_recorded: list[ssl.SSLContext] = []
_lock = threading.Lock()


def import_aiohttp_deferring_client_tls() -> None:
    """Import aiohttp with its client contexts' CA loading recorded for `load_client_tls` (no-op when imported).

    Call it before the process starts threads: while aiohttp is imported, any `SSLContext` made anywhere would have
    its CA loading recorded too.
    """
    if "aiohttp" in sys.modules:
        return
    original: Callable[[ssl.SSLContext], None] = ssl.SSLContext.set_default_verify_paths

    def record(context: ssl.SSLContext) -> None:
        with _lock:
            _recorded.append(context)

    setattr(ssl.SSLContext, "set_default_verify_paths", record)  # noqa: B010 (mypy refuses assigning a method)
    try:
        import aiohttp.connector  # noqa: F401 (the import is the point)
    finally:
        setattr(ssl.SSLContext, "set_default_verify_paths", original)  # noqa: B010


def load_client_tls() -> None:
    """Load the CA certificates the import deferred (blocking file I/O: call it from a thread). Idempotent."""
    with _lock:
        while _recorded:
            _recorded[-1].set_default_verify_paths()
            _recorded.pop()  # only once loaded, so `client_tls_pending` stays true until every context is complete


def client_tls_pending() -> bool:
    """True while a deferred client context still lacks its CA certificates (read without the lock, so the event
    loop never waits on a load in progress: a caller that sees True awaits `load_client_tls` in a thread)."""
    return bool(_recorded)
