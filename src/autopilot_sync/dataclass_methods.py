"""The compiled code of the methods `dataclasses` generates, cached beside the bytecode, for the host's start.

Why: a dataclass's `__init__`, `__repr__`, `__eq__`, `__hash__` and a frozen class's `__setattr__`/`__delattr__`
are generated as source text and compiled by `exec` each time the class is created, in every process: a `.pyc`
never holds them. The host creates ~115 dataclasses before `ready` (the wire messages, the module definition, the
SQL plans, …), and compiling their ~600 methods was ~0.1 s of its ~0.7 s of CPU to `ready` (docs/performance.md
"Round 7 — startup4").

`install` puts a caching `exec` in `dataclasses`' own namespace (a module global is found before the builtin, and
`dataclasses` runs each generated text through `exec`): each distinct text is compiled once and its code object
kept; `finish` removes it and, when anything was compiled, writes the code objects the start used
(keyed by their exact text, `marshal`) to `__pycache__/dataclass-methods.<cache tag>.bin` beside this module, where
the next start loads them. A text is its own key, so an entry is only ever used for the very text it was compiled
from, and `exec` of that code object does exactly what `exec` of the text does: the classes are the same. The file
lives where the package's `.pyc` files do and is trusted as they are (whoever can write it can write those).

No code of `dataclasses` is copied or replaced: an interpreter whose `dataclasses` compiles otherwise simply never
calls the shadow; a missing or unreadable file, an unwritable folder: no cache, the ordinary path.
"""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import importlib.util
import marshal
import sys
import threading
from pathlib import Path
from types import CodeType
from typing import Any

#: The file's first bytes: this format, then the interpreter's bytecode magic (a new interpreter ignores the file).
_HEADER = b"APSDCM2\0" + importlib.util.MAGIC_NUMBER
#: Bytes of the BLAKE2b digest of the marshalled code that follows the header: `marshal` trusts its input, and a
#: code object damaged on disk could crash every start, so a file whose digest does not match is not loaded.
_DIGEST_BYTES = 32


def _digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=_DIGEST_BYTES).digest()


_lock = threading.Lock()
_installed = False
_codes: dict[str, CodeType] = {}  # text -> code, loaded from the file
_used: dict[str, CodeType] = {}  # text -> code, of the methods created since `install`
_compiled = 0  # texts compiled since `install` (not found in the file)


def cache_path() -> Path:
    """`__pycache__/dataclass-methods.<cache tag>.bin` beside this module."""
    return Path(__file__).with_name("__pycache__") / f"dataclass-methods.{sys.implementation.cache_tag}.bin"


def install(path: Path | None = None) -> bool:
    """Create dataclasses' methods from compiled code cached at `path` (default `cache_path()`) until `finish`.

    False (and nothing changed) when installed already or when `dataclasses` has a global `exec` of its own."""
    global _installed, _compiled
    if _installed or "exec" in vars(dataclasses):
        return False
    _codes.clear()
    _codes.update(_load(path or cache_path()))
    _used.clear()
    _compiled = 0
    _installed = True
    dataclasses.exec = _exec  # type: ignore[attr-defined]
    return True


def finish(path: Path | None = None) -> int:
    """Take the shadow `exec` out of `dataclasses`; when some method text was compiled since `install`, write the
    code of every method created since then to `path` (default `cache_path()`). Returns how many were compiled."""
    global _installed
    with _lock:
        if not _installed:
            return 0
        del dataclasses.exec  # type: ignore[attr-defined]
        _installed = False
        used = dict(_used)
        compiled = _compiled
        _codes.clear()
        _used.clear()
    if compiled:
        try:
            from autopilot_sync.durable_files import write_atomically

            target = path or cache_path()
            target.parent.mkdir(exist_ok=True)  # no `__pycache__` yet when nothing was byte-compiled
            payload = marshal.dumps(used)
            write_atomically(target, _HEADER + _digest(payload) + payload)
        except (OSError, ValueError):  # a read-only install: the next start compiles, as without this module
            pass
    return compiled


def _load(path: Path) -> dict[str, CodeType]:
    try:
        data = path.read_bytes()
    except OSError:
        return {}
    if not data.startswith(_HEADER):
        return {}
    start = len(_HEADER) + _DIGEST_BYTES
    payload = data[start:]
    if _digest(payload) != data[len(_HEADER) : start]:  # torn or flipped on disk: compile, and write it again
        return {}
    try:
        loaded = marshal.loads(payload)
    except (EOFError, ValueError, TypeError):
        return {}
    if not isinstance(loaded, dict):
        return {}
    return {text: code for text, code in loaded.items() if isinstance(text, str) and isinstance(code, CodeType)}


def _exec(source: Any, globals: dict[str, Any] | None = None, locals: Any = None, /) -> None:
    """The builtin `exec` as `dataclasses` calls it, a text's code taken from the cache (compiled once otherwise)."""
    global _compiled
    if globals is None:  # what the builtin does: the caller's namespaces
        frame = sys._getframe(1)
        globals = frame.f_globals
        if locals is None:
            locals = frame.f_locals
    if type(source) is str:
        code = _codes.get(source)
        if code is None:
            code = _codes[source] = compile(source, "<string>", "exec")
            _compiled += 1
        _used[source] = code
        source = code
    builtins.exec(source, globals, locals)
