"""aiohttp's server without its client: the client package imported with the first client request.

`aiohttp/__init__` imports the whole HTTP client (its request and connector classes, attrs-built tracing signals,
the cookie jar, the digest-auth middleware, …) and `aiohttp.connector` builds two client `SSLContext`s with the
system CA bundle loaded into each (OpenSSL 3.0 parses the whole bundle every time, ~0.1 s of CPU apiece). So every
`from aiohttp import web` paid for a client. The host serves with `aiohttp.web`; its one client request is the OIDC
key fetch of a trusted issuer (`auth/oidc.py`), which may never happen. The client was ~60 ms of the host's
~0.8 s of CPU to `ready` besides those contexts (docs/performance.md "Round 6 — startup3").

So the host imports aiohttp through `import_aiohttp_server_only`: `partial_package.import_without_init` creates
the package object without running its `__init__`, so `aiohttp.web`, `aiohttp.http`, … import as usual.
`complete_aiohttp` later runs that `__init__` on the same module object, which imports the client and binds the
package's names; the server's classes never change identity. The OIDC fetch calls it in a thread before its first
request, so the event loop never waits for it. Until then any other access to a package-level name
(`aiohttp.ClientSession`, `from aiohttp import WSMsgType`) completes the package first (see `partial_package.py`).

One more thing the server's import did eagerly: `aiohttp.web_fileresponse` makes a `mimetypes.MimeTypes()` at
import, whose constructor runs the standard library's global `mimetypes.init()`, reading the system's MIME tables
(`/etc/mime.types`, ~8 ms) into the module-level database that instance never consults (it starts from the
built-in defaults). The host never guesses a type; the import runs with `mimetypes.inited` set, and restores it, so
the global database is read the way the standard library means it to be: by the first `mimetypes.guess_type`.
"""

from __future__ import annotations

import mimetypes
import re
from types import ModuleType

from autopilot_sync.partial_package import complete, import_without_init, pending

#: `__version__ = "3.14.5"` in aiohttp's `__init__`: `aiohttp.http` reads it from the package (`from . import
#: __version__`) for its `Server` header, so the package object needs it before any submodule runs.
_VERSION = re.compile(rb'^__version__ = "([^"]+)"$', re.MULTILINE)


def import_aiohttp_server_only() -> None:
    """Import `aiohttp.web` without running the package's `__init__` (a no-op when aiohttp is already imported).

    Call it before anything else imports aiohttp. If the package does not have the shape this relies on (no literal
    `__version__` in its `__init__`), the package is imported whole, as before: slower, never broken.
    """
    deferred_mime_tables = not mimetypes.inited
    mimetypes.inited = True  # `MimeTypes()` then skips the global `init()`; `guess_type` still runs it when first used
    try:
        import_without_init("aiohttp", ("web",), _set_version)
    finally:
        if deferred_mime_tables:
            mimetypes.inited = False


def client_pending() -> bool:
    """True while `aiohttp` is the server-only package (its `__init__`, so its client, not yet run)."""
    return pending("aiohttp")


def complete_aiohttp() -> ModuleType:
    """Run aiohttp's `__init__` on the server-only package (blocking imports and CA loading: call it from a thread
    when an event loop runs), and return the whole package. Idempotent; a plain import when aiohttp is not loaded."""
    return complete("aiohttp")


def _set_version(package: ModuleType, init_path: str) -> bool:
    """Give the package object the `__version__` its `__init__` would set (False: no literal version found)."""
    try:
        with open(init_path, "rb") as source:
            found = _VERSION.search(source.read())
    except OSError:
        return False
    if found is None:
        return False
    package.__dict__["__version__"] = found.group(1).decode()
    return True
