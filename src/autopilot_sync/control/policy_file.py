"""Control's policy file: TOML grants (and named groups of keys) read at start and again whenever the file changes.

```toml
[groups]
team = ["npub1...", "<64 hex>"]

[[grant]]                      # readers: connect, see presence, report checkpoints on runtime streams
groups = ["team"]
scopes = ["sync.subscribe", "sync.checkpoint.write"]
streams = ["runtime.*"]

[[grant]]                      # the runtime: publish, grant readers, administer its streams
keys = ["<runtime hex pubkey>"]
scopes = ["sync.append", "sync.admin", "sync.subscribe"]
streams = ["runtime.*"]
```

`keys` takes hex or npub public keys, or `*` for any key with a valid proof. Unknown fields, scopes, groups, keys
that do not parse and stream entries that are not stream ids, `prefix*` or `*` are refused with the file, the grant
and the reason: a policy that does not say exactly what it means never starts.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from autopilot_sync.contract.scopes import Scope
from autopilot_sync.control.policy import ANY_KEY, Grant, ScopePolicy
from autopilot_sync.control.request import STREAM_PATTERN
from autopilot_sync.nostr.errors import NostrKeyError
from autopilot_sync.nostr.keys import PublicKey

_log = logging.getLogger(__name__)
_TOP = frozenset({"groups", "grant"})
_GRANT = frozenset({"keys", "groups", "scopes", "streams"})


class PolicyFileError(ValueError):
    """The policy file cannot be read or does not say exactly what it means; the message names where."""


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PolicyFileError(f"{where} must be an array of strings")
    return list(value)


def _key(text: str, where: str) -> str:
    if text == ANY_KEY:
        return ANY_KEY
    try:
        return PublicKey.parse(text).hex
    except (NostrKeyError, ValueError):
        raise PolicyFileError(f"{where}: {text!r} is not a Nostr public key (hex or npub) nor '*'") from None


def parse_policy(text: str, source: str, allowlist: Iterable[str] = ()) -> ScopePolicy:
    """The grants of a policy file's text; keys on `allowlist` (the append allowlist setting) get every scope on `*`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyFileError(f"{source}: not TOML: {exc}") from None
    unknown = sorted(set(data) - _TOP)
    if unknown:
        raise PolicyFileError(f"{source}: unknown entry {unknown[0]!r} (entries: groups, grant)")
    groups_raw = data.get("groups", {})
    if not isinstance(groups_raw, dict):
        raise PolicyFileError(f"{source}: [groups] must be a table of name = [keys]")
    groups = {
        name: frozenset(_key(k, f"{source}: group {name}") for k in _strings(keys, f"{source}: group {name}"))
        for name, keys in groups_raw.items()
    }
    grants_raw = data.get("grant", [])
    if not isinstance(grants_raw, list):
        raise PolicyFileError(f"{source}: grant must be an array of tables ([[grant]])")
    known_scopes = {scope.value: scope for scope in Scope}
    grants: list[Grant] = []
    for number, raw in enumerate(grants_raw, start=1):
        where = f"{source}: grant {number}"
        if not isinstance(raw, dict):
            raise PolicyFileError(f"{where} must be a table")
        extra = sorted(set(raw) - _GRANT)
        if extra:
            raise PolicyFileError(f"{where}: unknown field {extra[0]!r} (fields: {', '.join(sorted(_GRANT))})")
        keys = {_key(k, where) for k in _strings(raw.get("keys", []), f"{where}: keys")}
        for group in _strings(raw.get("groups", []), f"{where}: groups"):
            if group not in groups:
                raise PolicyFileError(f"{where}: unknown group {group!r}")
            keys |= groups[group]
        if not keys:
            raise PolicyFileError(f"{where} names no key (keys or groups)")
        scopes = _strings(raw.get("scopes"), f"{where}: scopes")
        bad = [name for name in scopes if name not in known_scopes]
        if bad or not scopes:
            raise PolicyFileError(f"{where}: scopes must be some of {', '.join(known_scopes)} (got {scopes})")
        streams = _strings(raw.get("streams"), f"{where}: streams")
        wrong = [p for p in streams if not STREAM_PATTERN.fullmatch(p)]
        if wrong or not streams:
            raise PolicyFileError(f"{where}: streams must be stream ids, 'prefix*' patterns or '*' (got {streams})")
        grants.append(Grant(frozenset(keys), frozenset(known_scopes[s] for s in scopes), tuple(streams)))
    producers = frozenset(key.lower() for key in allowlist)
    if producers:
        grants.append(Grant(producers, frozenset(Scope), ("*",)))
    return ScopePolicy(tuple(grants))


class PolicySource:
    """The policy in force: the file's grants, re-read when the file changes; the last good one if it breaks."""

    def __init__(self, path: Path | None, allowlist: Iterable[str] = ()) -> None:
        self.path = path
        self.allowlist = tuple(allowlist)
        self._stamp: tuple[int, int] | None = None
        self._policy = ScopePolicy.from_allowlist(self.allowlist) if path is None else self._load()

    def _read_stamp(self) -> tuple[int, int]:
        assert self.path is not None
        stat = os.stat(self.path)
        return stat.st_mtime_ns, stat.st_size

    def _load(self) -> ScopePolicy:
        assert self.path is not None
        try:
            stamp = self._read_stamp()
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyFileError(f"{self.path}: cannot read the policy file: {exc}") from None
        policy = parse_policy(text, str(self.path), self.allowlist)
        self._stamp = stamp
        return policy

    def current(self) -> ScopePolicy:
        """The policy now (the file is checked for changes on every call: one `stat`)."""
        if self.path is None:
            return self._policy
        try:
            stamp: tuple[int, int] | None = self._read_stamp()
        except OSError:
            stamp = None
        if stamp is None or stamp != self._stamp:
            try:
                self._policy = self._load()
                _log.warning("policy reloaded from %s: %d grants", self.path, len(self._policy.grants))
            except PolicyFileError as exc:
                self._stamp = stamp  # said once per change, not on every request
                _log.error("policy file changed but cannot be used, keeping the last good policy: %s", exc)
        return self._policy
