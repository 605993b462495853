"""The release ledger of one environment: an append-only JSON Lines file plus the schema each release carried.

Why a ledger: the host's publish route replaces what a database runs, but remembers nothing about what came before
it. The lane records which release an environment is meant to run (tag, schema, source revision, time, the drift it
was checked against), checks the live host against that record, and keeps the history (and the bundles) that make
rollback a lookup and a publish instead of an archaeology session. Entries are never
rewritten; the current release is derived by replaying them.

Layout under `<AUTOPILOT_SYNC_OPS_STATE_DIR>/<env>/`: `ledger.jsonl` (one entry per line), `schemas/<tag>.json`,
and `bundles/<sha256>.js` (the JavaScript bundles of TypeScript releases, so a rollback can publish them again).
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autopilot_sync.durable_files import write_atomically

LEDGER_FILE = "ledger.jsonl"
SCHEMAS_DIR = "schemas"
BUNDLES_DIR = "bundles"


class LedgerError(RuntimeError):
    """The ledger cannot be read (a torn or hand-edited line) or names a schema that is not stored."""


class Action(enum.Enum):
    """What an entry records. `publish`/`promote`/`rollback` change the intended release; `verify` checks it."""

    PUBLISH = "publish"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    VERIFY = "verify"


@dataclass(frozen=True, slots=True)
class Entry:
    """One ledger line."""

    action: Action
    tag: str
    schema_hash: str
    at: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The line as written."""
        return {
            "action": self.action.value,
            "tag": self.tag,
            "schema_hash": self.schema_hash,
            "at": self.at,
            "detail": dict(self.detail),
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Entry:
        """Parse a line (KeyError/ValueError when it is not an entry)."""
        return cls(
            Action(value["action"]),
            str(value["tag"]),
            str(value["schema_hash"]),
            str(value["at"]),
            dict(value.get("detail", {})),
        )


def now_text() -> str:
    """UTC time in ISO 8601 with seconds: what every entry's `at` holds."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


class Ledger:
    """One environment's ledger directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def path(self) -> Path:
        """The JSON Lines file."""
        return self.directory / LEDGER_FILE

    def entries(self) -> list[Entry]:
        """Every entry, oldest first (empty when the environment has none yet)."""
        if not self.path.exists():
            return []
        out: list[Entry] = []
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                out.append(Entry.from_json(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                raise LedgerError(f"{self.path}:{number}: not a ledger entry ({exc})") from None
        return out

    def append(self, entry: Entry) -> None:
        """Add one line and fsync it: a recorded release survives a crash of the operator's machine."""
        self.directory.mkdir(parents=True, exist_ok=True)
        line = json.dumps(entry.to_json(), sort_keys=True, separators=(",", ":")) + "\n"
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def save_schema(self, tag: str, schema: Mapping[str, Any]) -> Path:
        """Store the schema a release carries (once; a tag names one schema, so an existing file is kept)."""
        path = self.directory / SCHEMAS_DIR / f"{tag}.json"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, json.dumps(schema, sort_keys=True, indent=1).encode("utf-8"))
        return path

    def save_bundle(self, sha256: str, bundle: bytes) -> Path:
        """Store a release's JavaScript bundle under its content hash (once), for a later rollback to publish."""
        path = self.directory / BUNDLES_DIR / f"{sha256}.js"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, bundle)
        return path

    def load_bundle(self, sha256: str) -> bytes:
        """The bundle recorded under `sha256` (LedgerError when it is missing or not those bytes)."""
        path = self.directory / BUNDLES_DIR / f"{sha256}.js"
        try:
            bundle = path.read_bytes()
        except OSError as exc:
            raise LedgerError(f"the bundle {sha256[:12]} is not recorded ({path}): {exc.strerror}") from None
        if hashlib.sha256(bundle).hexdigest() != sha256:
            raise LedgerError(f"the recorded bundle {path} is not the one recorded (sha256 differs)")
        return bundle

    def load_schema(self, tag: str) -> dict[str, Any]:
        """The schema recorded for `tag`."""
        path = self.directory / SCHEMAS_DIR / f"{tag}.json"
        try:
            value: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise LedgerError(f"schema of release {tag} is not stored at {path}: {exc}") from None
        return value

    def releases(self) -> list[Entry]:
        """The stack of intended releases: publish/promote push (unless already on top), rollback pops.

        The last item is the current release; the one before it is where a rollback goes.
        """
        stack: list[Entry] = []
        for entry in self.entries():
            if entry.action in (Action.PUBLISH, Action.PROMOTE):
                if not stack or stack[-1].tag != entry.tag:
                    stack.append(entry)
            elif entry.action is Action.ROLLBACK:
                while stack and stack[-1].tag != entry.tag:
                    stack.pop()
                if not stack:
                    stack.append(entry)
        return stack

    def current(self) -> Entry | None:
        """The release the environment is meant to run now."""
        stack = self.releases()
        return stack[-1] if stack else None

    def previous(self) -> Entry | None:
        """The release a rollback returns to."""
        stack = self.releases()
        return stack[-2] if len(stack) > 1 else None

    def verified(self, tag: str) -> Entry | None:
        """The latest successful verification of `tag` made while it was the intended release, if any."""
        found: Entry | None = None
        current: str | None = None
        for entry in self.entries():
            if entry.action is Action.VERIFY:
                if entry.tag == tag == current and entry.detail.get("ok") is True:
                    found = entry
            else:
                if entry.tag != current:
                    found = None
                current = entry.tag
        return found if current == tag else None
