"""Import some submodules of a third-party package without running its `__init__`; run that `__init__` later.

Why: a package's `__init__` often imports everything it has, and a service start pays for all of it although it
needs a few submodules until its first request of some kind. aiohttp's `__init__` imports its whole HTTP client
for a server (`auth/aiohttp_client.py`); prometheus_client's imports its text exposition (with `http.server`,
`socketserver`, `wsgiref`, `gzip`) for a registry whose first scrape may come much later (`host/metrics.py`);
each was ~1-8% of the host's CPU to `ready` (docs/performance.md "Round 6 — startup3", "Round 7 — startup4").

`import_without_init` creates the package object from its spec and puts it in `sys.modules` without running
`__init__`, so the submodules named import as usual (each an ordinary submodule import from the package's own
directory). `complete` later runs that `__init__` on the same module object, which binds the package's names;
every submodule already loaded stays the one in use, so no class changes identity. Until then any access to a
package-level name (`aiohttp.ClientSession`, `from prometheus_client import generate_latest`) completes the
package first (a module `__getattr__`, PEP 562): a half package is slower to reach, never wrong. A package that
was imported before (tests, other services) is whole, and nothing here changes it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType

_lock = threading.RLock()
_completing: list[tuple[int, str]] = []  # (thread, package) running an `__init__` now: its own probes must miss
_submodules: dict[str, set[str]] = {}  # per package, names in its folder: `from . import x` probes them first
_getattrs: dict[str, Callable[[str], object]] = {}  # per package, the `__getattr__` this module installed


def import_without_init(
    name: str, submodules: Sequence[str], prepare: Callable[[ModuleType, str], bool] | None = None
) -> bool:
    """Import `name.<each of submodules>` without running `name`'s `__init__` (then completed on first use).

    `prepare(package, init_path)` may set what the submodules read from the package before they run; it answers
    False when the package does not have the shape it relies on. Then, or when `name` is already imported or not
    found as a package, the submodules are imported the ordinary way (with `__init__`) and False is returned:
    slower, never broken.
    """
    if name in sys.modules:
        _import_all(name, submodules)
        return False
    spec = importlib.util.find_spec(name)
    origin = spec.origin if spec is not None and spec.loader is not None else None
    if spec is None or origin is None or spec.submodule_search_locations is None:
        _import_all(name, submodules)
        return False
    package = importlib.util.module_from_spec(spec)
    if prepare is not None and not prepare(package, origin):
        _import_all(name, submodules)
        return False
    _submodules[name] = {entry.partition(".")[0] for entry in os.listdir(os.path.dirname(origin))}

    def complete_on_access(attribute: str) -> object:
        return _complete_on_access(name, attribute)

    _getattrs[name] = complete_on_access
    package.__dict__["__getattr__"] = complete_on_access
    sys.modules[name] = package
    _import_all(name, submodules)
    return True


def pending(name: str) -> bool:
    """True while `name` is a package imported by `import_without_init` whose `__init__` has not run yet."""
    package = sys.modules.get(name)
    getattr_ = _getattrs.get(name)
    return package is not None and getattr_ is not None and package.__dict__.get("__getattr__") is getattr_


def complete(name: str) -> ModuleType:
    """Run `name`'s `__init__` on the partial package (blocking imports: call it from a thread when an event loop
    runs), and return the whole package. Idempotent; a plain import when `name` is not loaded."""
    with _lock:
        if pending(name):
            package = sys.modules[name]
            assert package.__spec__ is not None and package.__spec__.loader is not None
            _completing.append((threading.get_ident(), name))
            try:
                package.__spec__.loader.exec_module(package)  # a failure leaves it pending: the next access raises too
            finally:
                _completing.pop()
            if pending(name):  # `__init__` bound no `__getattr__` of its own
                del package.__dict__["__getattr__"]
        return importlib.import_module(name)


def _complete_on_access(name: str, attribute: str) -> object:
    """A partial package's `__getattr__`: a package-level name completes the package, then is looked up."""
    if (
        attribute.startswith("__")
        or attribute in _submodules.get(name, ())
        or (threading.get_ident(), name) in _completing
    ):
        # Dunder probes (pickle, inspect, the import system), `from . import hdrs` (which checks the attribute
        # before it imports the submodule) and `__init__`'s own probes: none may start (or re-enter) the completion.
        raise AttributeError(f"module {name!r} has no attribute {attribute!r}")
    package = complete(name)
    try:
        return package.__dict__[attribute]
    except KeyError:
        raise AttributeError(f"module {name!r} has no attribute {attribute!r}") from None


def _import_all(name: str, submodules: Sequence[str]) -> None:
    for submodule in submodules:
        importlib.import_module(f"{name}.{submodule}")
