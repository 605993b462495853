"""Visibility filters accepted by an earlier start, remembered in the data directory so a restart skips sqlglot.

Checking a module's row-level-security filters at start means compiling them, and compiling imports sqlglot: about
0.15 s of the host's CPU before it can serve (docs/performance.md "Round 3 — start-up"). A restart that loads the
same filters over the same tables, with the same host and sqlglot, would get the same answer, so the start reads
one small file instead. The file holds a digest of everything the check reads; anything different (a changed
filter or table, another host version or sqlglot) misses and the filters are compiled again. A stale or damaged
file therefore costs a recompile, never the acceptance of a filter that does not compile. Nothing here is durable
on purpose: losing the file loses only the shortcut.

The same verdict is also kept in the host's cache directory (the `cache_dir` setting, one empty file named by the
digest), so a first start on a new data directory skips the compile when an earlier start of this host version
already checked exactly these filters over exactly these tables (as Python's own bytecode cache spares a second
compile). The digest names the file, so what is found there stands for the same inputs as the data directory's
record; the directory keeps the newest `CACHE_KEPT` verdicts.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
from pathlib import Path

from autopilot_sync import __version__
from autopilot_sync.host.datastore import Datastore
from autopilot_sync.host.sql.compile import check_visibility_filters

log = logging.getLogger(__name__)

#: The file in the data directory holding the digest of the last filter set the host compiled successfully.
VERDICT_FILE = "visibility-filters.checked"
#: The cache directory's subdirectory of verdicts, and how many it keeps (older ones are deleted when one is added).
CACHE_SUBDIR = "visibility-filters"
CACHE_KEPT = 32
#: The SQL layer whose compilation the verdict stands for (its sources are part of the digest).
_SQL_PACKAGE = Path(__file__).resolve().parent


def check_visibility_filters_at_start(datastore: Datastore, data_dir: Path, cache_dir: Path | None = None) -> None:
    """`check_visibility_filters`, skipped when `data_dir` (or `cache_dir`) records a successful check of exactly
    these filters.

    Raises `VisibilityFilterError` as the check does; a successful check is recorded in both for the next start.
    """
    if not datastore.module.visibility_filters():
        return
    digest = filters_digest(datastore)
    if checked_before(data_dir, digest):
        return
    if cache_dir is not None and cached(cache_dir, digest):
        remember_checked(data_dir, digest)
        return
    check_visibility_filters(datastore)
    remember_checked(data_dir, digest)
    if cache_dir is not None:
        remember_in_cache(cache_dir, digest)


def filters_digest(datastore: Datastore) -> str:
    """A digest of what checking the loaded module's filters reads: the filters, every table's definition, the SQL
    layer's sources, this host's and sqlglot's versions."""
    module = datastore.module
    digest = hashlib.sha256()
    for part in (__version__, _sqlglot_version()):
        digest.update(f"{part}\0".encode())
    for source in sorted(_SQL_PACKAGE.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    for filtered, sqls in sorted(module.visibility_filters().items()):
        for sql in sqls:
            digest.update(f"filter {filtered}\0{sql}\0".encode())
    for name in sorted(datastore.tables):
        table = datastore.tables[name].table
        shape = (table.name, table.columns, table.primary_key, table.unique, table.indexes, table.public, table.event)
        digest.update(f"table {shape!r}\0".encode())
    return digest.hexdigest()


def checked_before(data_dir: Path, digest: str) -> bool:
    """True when the data directory records that a start compiled exactly these filters successfully."""
    try:
        return (data_dir / VERDICT_FILE).read_text(encoding="ascii").strip() == digest
    except (OSError, UnicodeDecodeError):
        return False


def remember_checked(data_dir: Path, digest: str) -> None:
    """Record a successful check (best effort: a directory that refuses the write only loses the shortcut)."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / VERDICT_FILE).write_text(digest + "\n", encoding="ascii")
    except OSError as exc:
        log.debug("cannot record the visibility filters' check in %s: %s", data_dir, exc)


def cached(cache_dir: Path, digest: str) -> bool:
    """True when the cache directory holds the verdict for `digest` (a successful check of exactly these inputs)."""
    return (cache_dir / CACHE_SUBDIR / digest).is_file()


def remember_in_cache(cache_dir: Path, digest: str) -> None:
    """Keep the verdict for `digest` in the cache directory, and only the newest `CACHE_KEPT` (best effort)."""
    verdicts = cache_dir / CACHE_SUBDIR
    try:
        verdicts.mkdir(parents=True, exist_ok=True)
        (verdicts / digest).touch()
        others = sorted(
            (path for path in verdicts.iterdir() if path.name != digest), key=lambda path: path.stat().st_mtime
        )
    except OSError as exc:
        log.debug("cannot record the visibility filters' check in %s: %s", verdicts, exc)
        return
    for old in others[: max(0, len(others) - (CACHE_KEPT - 1))]:  # the oldest go; the one just written stays
        with contextlib.suppress(OSError):
            old.unlink()


def _sqlglot_version() -> str:
    """What identifies the installed sqlglot: its generated `_version.py` (read, not imported), else its metadata.

    Why not `importlib.metadata` first: importing it and scanning the installed distributions cost ~7 ms of every
    start (docs/performance.md "Round 5 — startup2"); the version file changes with every release just the same.
    """
    spec = importlib.util.find_spec("sqlglot")  # finds the package without importing it
    if spec is not None and spec.origin is not None:
        with contextlib.suppress(OSError):
            return hashlib.sha256((Path(spec.origin).parent / "_version.py").read_bytes()).hexdigest()
    from importlib import metadata

    try:
        return metadata.version("sqlglot")
    except metadata.PackageNotFoundError:
        return "unknown"
