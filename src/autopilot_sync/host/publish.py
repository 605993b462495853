"""Publishing a module to the running host: SpacetimeDB's `POST /v1/database` / `PUT /v1/database/:name` and `DELETE`.

One host serves one database (ADR 0005). A publish names what to run (`ModuleSource`: a Python module already
installed on the host, by dotted path, or a JavaScript bundle whose bytes are stored in the data directory), is
checked against what runs now with the schema diff (`spacetime/moduledef/diff.py`: what SpacetimeDB's automatic
migration accepts applies live and keeps the rows), and is refused with the readable diff otherwise, unless the
caller asked to delete the data (`clear`, `spacetime publish --delete-data`).

The steps, each with its own name so a fault test can kill the process at any of them (`tests/faults/publish_kill`):

1. `_stage` — a JavaScript bundle is written durably under `<data_dir>/modules/<sha256>.js` (content-addressed:
   harmless until the record below names it).
2. `_load` — the new module, loaded and described (a module that fails to load, whose visibility filters do not
   compile, or that breaks the data is refused).
3. `_commit` — the commit point: `meta.json` rewritten atomically naming the module, its schema and, for a clear,
   the offset the previous incarnation ends at (`recovery.record_publish`). A SIGKILL before it leaves the old
   module on the old data; after it, the new module (on the migrated rows, or on none) — never a mix.
4. `_install` — the engine swaps the module synchronously (`HostEngine.install`); every subscription is dropped and
   every WebSocket closed with 1012 when the schema changed (clients reconnect, as after SpacetimeDB's
   `DisconnectAllUsers`); then `init` (after a clear) and the start hook run, durably.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopilot_sync.bindings.module import Module
from autopilot_sync.durable_files import write_atomically
from autopilot_sync.host.datastore import Datastore
from autopilot_sync.host.engine import HostEngine
from autopilot_sync.host.hosted_module import HostedModule, hosted
from autopilot_sync.host.recovery import PUBLISHED, read_meta, record_publish
from autopilot_sync.host.sql import VisibilityFilterError, check_visibility_filters
from autopilot_sync.host.system_tables import SYSTEM_TABLES
from autopilot_sync.spacetime import moduledef
from autopilot_sync.spacetime.values import Identity

if TYPE_CHECKING:
    from autopilot_sync.spacetime.moduledef.diff import SchemaDiff

log = logging.getLogger(__name__)

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
MODULES_DIR = "modules"
"""Folder of the data directory holding published JavaScript bundles by content hash."""


class SourceKind(enum.Enum):
    """What kind of module a publish names."""

    PYTHON = "python"
    JS = "js"


@dataclass(frozen=True, slots=True)
class ModuleSource:
    """What runs: a Python module by dotted path (installed on the host), or a stored JavaScript bundle by sha256."""

    kind: SourceKind
    #: the dotted path, or the bundle's sha256 hex
    value: str

    def to_json(self) -> dict[str, str]:
        """As recorded in `meta.json`."""
        return {"kind": self.kind.value, "value": self.value}

    @classmethod
    def from_json(cls, value: Any) -> ModuleSource:
        """From `meta.json` (ValueError when it is not one)."""
        if not isinstance(value, dict):
            raise ValueError(f"not a module source: {value!r}")
        kind = SourceKind(value.get("kind"))
        text = str(value.get("value", ""))
        pattern = _DOTTED if kind is SourceKind.PYTHON else _SHA256
        if not pattern.fullmatch(text):
            raise ValueError(f"bad {kind.value} module source: {text!r}")
        return cls(kind, text)

    @classmethod
    def python(cls, path: str) -> ModuleSource:
        """A Python module by dotted path (ValueError when it is not one)."""
        if not _DOTTED.fullmatch(path) or len(path) > 200:
            raise ValueError("python_module must be a dotted Python import path such as autopilot_sync.module")
        return cls(SourceKind.PYTHON, path)

    def describe(self) -> str:
        """For logs and answers."""
        return self.value if self.kind is SourceKind.PYTHON else f"JavaScript bundle {self.value[:12]}"


class PublishRefusedError(Exception):
    """The publish is refused and nothing changed; `status` is the HTTP status, the message says why and what to do."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class PublishOp(enum.Enum):
    """SpacetimeDB's `PublishOp`: whether the publish created the database or updated it."""

    CREATED = "created"
    UPDATED = "updated"


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What a publish did: created or updated, the diff it applied, and whether clients were disconnected."""

    op: PublishOp
    diff: SchemaDiff
    cleared: bool
    disconnected: bool


#: Loads a module source into a runnable module (the server's loader; ModuleLoadError-like ValueError when it fails).
Loader = Callable[[ModuleSource, Path], HostedModule | Module]


def empty_module() -> Module:
    """What a host with no database runs: no tables, no reducers (every database route answers 404)."""
    return Module("no-database", "0")


class ModulePublisher:
    """Publishes to one engine, one publish at a time (`asyncio.Lock`): the steps in the module docstring."""

    def __init__(self, engine: HostEngine, load: Loader, *, published: bool) -> None:
        self.engine = engine
        self.load = load
        self.data_dir = engine.data_dir
        #: Whether the host serves a database (False: started without a module, or after DELETE).
        self.published = published
        self._lock = asyncio.Lock()

    def bundle_path(self, sha256: str) -> Path:
        """Where a JavaScript bundle with this content hash is stored."""
        return self.data_dir / MODULES_DIR / f"{sha256}.js"

    async def plan(self, source: ModuleSource, bundle: bytes | None) -> dict[str, Any]:
        """SpacetimeDB's `pre_publish`: the migration plan to `source`, and the token a `BreakClients` publish needs.

        `{"AutoMigrate": {"token", "migrate_plan", "break_clients", "major_version_upgrade"}}`, or
        `{"ManualMigrate": {"reason", "major_version_upgrade"}}` when only a delete-data publish can apply it.
        """
        async with self._lock:
            self._stage(source, bundle)
            module = self._load(source)
            try:
                diff = schema_diff(self.engine.module.definition(), module.definition())
            finally:
                _discard(module)
        text = diff.render(base_label="running", head_label="published")
        if diff.breaking:
            return {"ManualMigrate": {"reason": text, "major_version_upgrade": False}}
        return {
            "AutoMigrate": {
                "token": self.migration_token(diff),
                "migrate_plan": text,
                "break_clients": bool(diff.breaks_clients),
                "major_version_upgrade": False,
            }
        }

    def migration_token(self, diff: SchemaDiff) -> str:
        """SpacetimeDB's `MigrationToken`: a hash of the database and both schema hashes, acknowledging that this
        exact migration breaks clients (intent, not a secret: anyone can compute it)."""
        material = f"{self.engine.database_name}\n{diff.base_hash}\n{diff.head_hash}".encode()
        return hashlib.sha256(material).hexdigest()

    async def publish(
        self,
        source: ModuleSource,
        bundle: bytes | None,
        *,
        clear: bool,
        owner_identity: str | None = None,
        break_clients_token: str | None = None,
    ) -> PublishResult:
        """Load, check, stage, commit and install `source`; PublishRefusedError (nothing changed) when refused.

        A change that breaks clients (a column added) needs `break_clients_token`, the token `plan` gives.
        """
        async with self._lock:
            self._stage(source, bundle)
            module = self._load(source)
            creating = not self.published
            diff = schema_diff(self.engine.module.definition(), module.definition())
            if diff.breaking and not clear and not creating:
                _discard(module)
                raise PublishRefusedError(
                    400,
                    "Database update rejected: the new module breaks the stored data "
                    "(publish with --delete-data to start it empty):\n"
                    + diff.render(base_label="running", head_label="published"),
                )
            if diff.breaks_clients and not clear and not creating:
                if break_clients_token is None:
                    _discard(module)
                    raise PublishRefusedError(
                        400,
                        "Database update rejected: Migration plan contains a client-breaking change which is "
                        "disallowed under current policy (publish with --break-clients: policy=BreakClients and the "
                        "token POST /v1/database/:name/pre_publish gives):\n"
                        + diff.render(base_label="running", head_label="published"),
                    )
                if break_clients_token != self.migration_token(diff):
                    _discard(module)
                    raise PublishRefusedError(
                        400, "Database update rejected: Token provided is invalid or does not match expected hash"
                    )
            # A breaking first publish onto a host that held no database: nothing of value to keep.
            clear = clear or (creating and bool(diff.breaking))
            await self.engine.wait_durable_offset(self.engine.offset)
            if creating and owner_identity:
                self.engine.owner_identity = Identity.from_hex(owner_identity)
            self._commit(module, source, clear=clear, owner_identity=owner_identity if creating else None)
            changed = clear or not diff.identical
            self._install(module, clear=clear, schema_changed=changed)
            self.published = True
            await self.engine.after_install(clear=clear)
            log.info(
                "published %s (%s): %s",
                source.describe(),
                "cleared" if clear else "data kept",
                diff.render().split("\n")[0],
            )
            return PublishResult(PublishOp.CREATED if creating else PublishOp.UPDATED, diff, clear, changed)

    async def delete(self) -> None:
        """`DELETE /v1/database/:name`: the data is deleted and the host serves no database until the next publish."""
        async with self._lock:
            module = hosted(empty_module())
            await self.engine.wait_durable_offset(self.engine.offset)
            self._commit(module, None, clear=True, owner_identity=None)
            self._install(module, clear=True, schema_changed=True)
            self.published = False
            await self.engine.after_install(clear=True)
            log.info("database %s deleted", self.engine.database_name)

    def _stage(self, source: ModuleSource, bundle: bytes | None) -> None:
        """Step 1: a JavaScript bundle durably in place under its content hash (unused until step 3 names it)."""
        if source.kind is not SourceKind.JS or bundle is None:
            return
        path = self.bundle_path(source.value)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, bundle)

    def _load(self, source: ModuleSource) -> HostedModule:
        """Step 2: the module, loaded and described; nothing the data directory's record names has changed."""
        try:
            module = hosted(self.load(source, self.bundle_path(source.value)))
            module.definition()
        except Exception as exc:  # any failure to load is the publisher's problem, answered with its text
            raise PublishRefusedError(400, f"Failed to create or update the database: {exc}") from None
        try:  # row-level security is checked when a module loads, as at host start (the engine's own check)
            check_visibility_filters(Datastore(module, SYSTEM_TABLES))
        except VisibilityFilterError as exc:
            _discard(module)
            raise PublishRefusedError(400, f"Failed to create or update the database: {exc}") from None
        return module

    def _commit(
        self, module: HostedModule, source: ModuleSource | None, *, clear: bool, owner_identity: str | None
    ) -> None:
        """Step 3, the commit point: `meta.json` names the new module (atomic rename)."""
        record_publish(
            self.data_dir,
            module,
            self.engine.database_name,
            published=source.to_json() if source is not None else None,
            cleared_after=self.engine.offset if clear else None,
            owner_identity=owner_identity,
        )

    def _install(self, module: HostedModule, *, clear: bool, schema_changed: bool) -> None:
        """Step 4: the engine runs the new module from the next transaction on; the old one's runner stops."""
        previous = self.engine.module
        self.engine.install(module, clear=clear, schema_changed=schema_changed)
        if previous is not module:
            _discard(previous)


def schema_diff(running: moduledef.ModuleDef, published: moduledef.ModuleDef) -> SchemaDiff:
    """What a publish changes (`spacetime/moduledef/diff.py`, imported with the first publish, not at start)."""
    from autopilot_sync.spacetime.moduledef.diff import compare

    return compare(running, published)


def _discard(module: HostedModule) -> None:
    """Stop what a module no longer served runs outside this process (a TypeScript module's runner)."""
    close = getattr(module, "close", None)
    if callable(close):
        close()


def bundle_source(bundle: bytes) -> ModuleSource:
    """The source naming a JavaScript bundle: its sha256."""
    return ModuleSource(SourceKind.JS, hashlib.sha256(bundle).hexdigest())


def published_source(data_dir: Path) -> tuple[bool, ModuleSource | None]:
    """What `meta.json` says a publish installed: (whether any publish or delete happened, the source if one runs)."""
    meta = read_meta(data_dir)
    if PUBLISHED not in meta:
        return False, None
    value = meta[PUBLISHED]
    return True, None if value is None else ModuleSource.from_json(value)
