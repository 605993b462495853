"""aiohttp's server without its client: the client package imported with the first client request.

`aiohttp/__init__` imports the whole HTTP client (its request and connector classes, attrs-built tracing signals,
the cookie jar, the digest-auth middleware, …) and `aiohttp.connector` builds two client `SSLContext`s with the
system CA bundle loaded into each (OpenSSL 3.0 parses the whole bundle every time, ~0.1 s of CPU apiece). So every
`from aiohttp import web` paid for a client. The host serves with `aiohttp.web`; its one client request is the OIDC
key fetch of a trusted issuer (`auth/oidc.py`), which may never happen. The client was ~60 ms of the host's
~0.8 s of CPU to `ready` besides those contexts (docs/performance.md "Round 6 — startup3").

So the host imports aiohttp through `import_aiohttp_server_only`: the package object is created from its spec and
put in `sys.modules` without running its `__init__`, so `aiohttp.web`, `aiohttp.http`, … import as usual (each an
ordinary submodule import, from the package's own directory). `complete_aiohttp` later runs that `__init__` on the
same module object, which imports the client and binds the package's names; every submodule already loaded stays
the one in use, so the server's classes never change identity. The OIDC fetch calls it in a thread before its first
request, so the event loop never waits for it. Until then any other access to a package-level name
(`aiohttp.ClientSession`, `from aiohttp import WSMsgType`) completes the package first (a module `__getattr__`,
PEP 562): a half package is slower to reach, never wrong. Anything that imported aiohttp before (tests, the other
services) has the whole package and nothing here changes it.

One more thing the server's import did eagerly: `aiohttp.web_fileresponse` makes a `mimetypes.MimeTypes()` at
import, whose constructor runs the standard library's global `mimetypes.init()`, reading the system's MIME tables
(`/etc/mime.types`, ~8 ms) into the module-level database that instance never consults (it starts from the
built-in defaults). The host never guesses a type; the import runs with `mimetypes.inited` set, and restores it, so
the global database is read the way the standard library means it to be: by the first `mimetypes.guess_type`.
"""

from __future__ import annotations

import importlib
import importlib.util
import mimetypes
import os
import re
import sys
import threading
from types import ModuleType

#: `__version__ = "3.14.5"` in aiohttp's `__init__`: `aiohttp.http` reads it from the package (`from . import
#: __version__`) for its `Server` header, so the package object needs it before any submodule runs.
_VERSION = re.compile(rb'^__version__ = "([^"]+)"$', re.MULTILINE)

_lock = threading.RLock()
_completing: list[int] = []  # the thread running `__init__` now: its probes of names not bound yet must miss
_submodules: set[str] = set()  # names in the package's folder: `from . import hdrs` probes them before importing


def import_aiohttp_server_only() -> None:
    """Import `aiohttp.web` without running the package's `__init__` (a no-op when aiohttp is already imported).

    Call it before anything else imports aiohttp. If the package does not have the shape this relies on (no literal
    `__version__` in its `__init__`), the package is imported whole, as before: slower, never broken.
    """
    if "aiohttp" in sys.modules:
        return
    spec = importlib.util.find_spec("aiohttp")
    origin = spec.origin if spec is not None and spec.loader is not None else None
    version = _version(origin) if origin else None
    if spec is None or origin is None or version is None:
        importlib.import_module("aiohttp.web")
        return
    package = importlib.util.module_from_spec(spec)
    _submodules.update(entry.partition(".")[0] for entry in os.listdir(os.path.dirname(origin)))
    package.__dict__["__version__"] = version
    package.__dict__["__getattr__"] = _complete_on_access
    sys.modules["aiohttp"] = package
    deferred_mime_tables = not mimetypes.inited
    mimetypes.inited = True  # `MimeTypes()` then skips the global `init()`; `guess_type` still runs it when first used
    try:
        importlib.import_module("aiohttp.web")
    finally:
        if deferred_mime_tables:
            mimetypes.inited = False


def client_pending() -> bool:
    """True while `aiohttp` is the server-only package (its `__init__`, so its client, not yet run)."""
    package = sys.modules.get("aiohttp")
    return package is not None and package.__dict__.get("__getattr__") is _complete_on_access


def complete_aiohttp() -> ModuleType:
    """Run aiohttp's `__init__` on the server-only package (blocking imports and CA loading: call it from a thread
    when an event loop runs), and return the whole package. Idempotent; a plain import when aiohttp is not loaded."""
    with _lock:
        if client_pending():
            package = sys.modules["aiohttp"]
            assert package.__spec__ is not None and package.__spec__.loader is not None
            _completing.append(threading.get_ident())
            try:
                package.__spec__.loader.exec_module(package)  # a failure leaves it pending: the next access raises too
            finally:
                _completing.pop()
            if package.__dict__.get("__getattr__") is _complete_on_access:  # `__init__` bound none of its own
                del package.__dict__["__getattr__"]
        return importlib.import_module("aiohttp")


def _complete_on_access(name: str) -> object:
    """The server-only package's `__getattr__`: a package-level name completes the package, then is looked up."""
    if name.startswith("__") or name in _submodules or threading.get_ident() in _completing:
        # Dunder probes (pickle, inspect, the import system), `from . import hdrs` (which checks the attribute
        # before it imports the submodule) and `__init__`'s own probes: none may start (or re-enter) the completion.
        raise AttributeError(f"module 'aiohttp' has no attribute {name!r}")
    package = complete_aiohttp()
    try:
        return package.__dict__[name]
    except KeyError:
        raise AttributeError(f"module 'aiohttp' has no attribute {name!r}") from None


def _version(init_path: str) -> str | None:
    try:
        with open(init_path, "rb") as source:
            found = _VERSION.search(source.read())
    except OSError:
        return None
    return found.group(1).decode() if found else None
