"""The compiled code of the methods `dataclasses` generates, cached beside the bytecode, for the host's start.

Why: a dataclass's `__init__`, `__repr__`, `__eq__`, `__hash__` and a frozen class's `__setattr__`/`__delattr__`
are generated as source text and compiled by `exec` each time the class is created, in every process: a `.pyc`
never holds them. The host creates ~115 dataclasses before `ready` (the wire messages, the module definition, the
SQL plans, …), and compiling their ~600 methods was ~0.1 s of its ~0.7 s of CPU to `ready` (docs/performance.md
"Round 7 — startup4").

`install` replaces `dataclasses._create_fn` with a copy that compiles each distinct text once and keeps the code
object; `finish` puts the original back and, when anything was compiled, writes the code objects the start used
(keyed by their exact text, `marshal`) to `__pycache__/dataclass-methods.<cache tag>.bin` beside this module, where
the next start loads them. A text is its own key, so an entry is only ever used for the very text it was compiled
from, and `exec` of that code object does exactly what `exec` of the text does: the classes are the same. The file
lives where the package's `.pyc` files do and is trusted as they are (whoever can write it can write those).

Only the `dataclasses._create_fn` this was written against is replaced (CPython 3.11, checked by a fingerprint of
its code); any other interpreter, a missing or unreadable file, an unwritable folder: no cache, the ordinary path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import marshal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import CodeType
from typing import Any

#: sha256 of `_create_fn`'s bytecode, names and constants in CPython 3.11 (the function `_create_fn` below copies).
KNOWN_CREATE_FN = "018287502275d2a18f9018c8a522027d210e093ba09b44c5ed7ef3426a4aa1ed"
#: The file's first bytes: this format, then the interpreter's bytecode magic (a new interpreter ignores the file).
_HEADER = b"APSDCM1\0" + importlib.util.MAGIC_NUMBER

_lock = threading.Lock()
_original: Callable[..., Any] | None = None
_codes: dict[str, CodeType] = {}  # text -> code, loaded from the file
_used: dict[str, CodeType] = {}  # text -> code, of the methods created since `install`
_compiled = 0  # texts compiled since `install` (not found in the file)


def cache_path() -> Path:
    """`__pycache__/dataclass-methods.<cache tag>.bin` beside this module."""
    return Path(__file__).with_name("__pycache__") / f"dataclass-methods.{sys.implementation.cache_tag}.bin"


def fingerprint(function: Callable[..., Any]) -> str:
    """sha256 of a function's bytecode, names and constants, nested code included (what `KNOWN_CREATE_FN` is)."""
    digest = hashlib.sha256()

    def add(code: CodeType) -> None:
        digest.update(code.co_code + repr(code.co_names).encode())
        for const in code.co_consts:
            if isinstance(const, CodeType):
                add(const)
            else:
                digest.update(repr(const).encode())

    add(function.__code__)
    return digest.hexdigest()


def install(path: Path | None = None) -> bool:
    """Create dataclasses' methods from compiled code cached at `path` (default `cache_path()`) until `finish`.

    False (and nothing changed) when this interpreter's `dataclasses._create_fn` is not the known one."""
    global _original, _compiled
    original = getattr(dataclasses, "_create_fn", None)
    if _original is not None or original is None or fingerprint(original) != KNOWN_CREATE_FN:
        return False
    _codes.clear()
    _codes.update(_load(path or cache_path()))
    _used.clear()
    _compiled = 0
    _original = original
    dataclasses._create_fn = _create_fn  # type: ignore[attr-defined]
    return True


def finish(path: Path | None = None) -> int:
    """Put `dataclasses._create_fn` back; when some method text was compiled since `install`, write the code of
    every method created since then to `path` (default `cache_path()`). Returns how many texts were compiled."""
    global _original
    with _lock:
        if _original is None:
            return 0
        dataclasses._create_fn = _original  # type: ignore[attr-defined]
        _original = None
        used = dict(_used)
        compiled = _compiled
        _codes.clear()
        _used.clear()
    if compiled:
        try:
            from autopilot_sync.durable_files import write_atomically

            target = path or cache_path()
            target.parent.mkdir(exist_ok=True)  # no `__pycache__` yet when nothing was byte-compiled
            write_atomically(target, _HEADER + marshal.dumps(used))
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
    try:
        loaded = marshal.loads(data[len(_HEADER) :])
    except (EOFError, ValueError, TypeError):
        return {}
    if not isinstance(loaded, dict):
        return {}
    return {text: code for text, code in loaded.items() if isinstance(text, str) and isinstance(code, CodeType)}


def _create_fn(
    name: str,
    args: list[str],
    body: list[str],
    *,
    globals: dict[str, Any] | None = None,
    locals: dict[str, Any] | None = None,
    return_type: Any = dataclasses.MISSING,
) -> Any:
    """CPython 3.11's `dataclasses._create_fn`, line for line, with the `exec` of the text's cached code."""
    global _compiled
    if locals is None:
        locals = {}
    return_annotation = ""
    if return_type is not dataclasses.MISSING:
        locals["_return_type"] = return_type
        return_annotation = "->_return_type"
    joined_args = ",".join(args)
    joined_body = "\n".join(f"  {b}" for b in body)
    txt = f" def {name}({joined_args}){return_annotation}:\n{joined_body}"
    local_vars = ", ".join(locals.keys())
    txt = f"def __create_fn__({local_vars}):\n{txt}\n return {name}"
    code = _codes.get(txt)
    if code is None:
        code = _codes[txt] = compile(txt, "<string>", "exec")
        _compiled += 1
    _used[txt] = code
    ns: dict[str, Any] = {}
    exec(code, dataclasses.__dict__ if globals is None else globals, ns)  # None: the globals `dataclasses` runs in
    return ns["__create_fn__"](**locals)
