"""Which scopes a proven Nostr key may hold: readers, and the producers on the append allowlist.

The decision is all-or-nothing: a request for a scope the key may not have is refused with `scope_not_allowed`
naming the scope and the rule, never narrowed to what is allowed. A client that silently got fewer rights than it
asked for would fail later, far from the cause (a publisher whose appends are rejected one by one by the host).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from autopilot_sync.control.errors import ControlError, ControlErrorCode
from autopilot_sync.nostr.keys import PublicKey


class Scope(enum.Enum):
    """The scopes a session token can carry; the values are what the sync module checks (`module/auth.py`).

    Defined here rather than imported so the control service does not load the module and its reducers; a test
    keeps the two enums identical.
    """

    SUBSCRIBE = "sync.subscribe"
    CHECKPOINT_WRITE = "sync.checkpoint.write"
    APPEND = "sync.append"
    ADMIN = "sync.admin"


#: What any key with a valid proof may have: connect as a reader and report its checkpoints.
READER_SCOPES = frozenset({Scope.SUBSCRIBE, Scope.CHECKPOINT_WRITE})
#: What only keys on `append_allowlist` may have on top: publish events, and administer streams (retention).
PRODUCER_SCOPES = frozenset({Scope.APPEND, Scope.ADMIN})


@dataclass(frozen=True, slots=True)
class ScopePolicy:
    """The scope rules of one control service, from its settings."""

    append_allowlist: frozenset[str]

    @classmethod
    def from_allowlist(cls, pubkeys: Iterable[str]) -> ScopePolicy:
        """Build from hex pubkeys (compared lowercase, as `PublicKey.hex` writes them)."""
        return cls(frozenset(key.lower() for key in pubkeys))

    def allowed(self, pubkey: PublicKey) -> frozenset[Scope]:
        """Every scope `pubkey` may be granted."""
        if pubkey.hex in self.append_allowlist:
            return READER_SCOPES | PRODUCER_SCOPES
        return READER_SCOPES

    def check(self, pubkey: PublicKey, requested: Iterable[Scope]) -> None:
        """Raise `scope_not_allowed` (403) unless every requested scope is allowed for `pubkey`."""
        refused = [scope for scope in requested if scope not in self.allowed(pubkey)]
        if refused:
            names = ", ".join(scope.value for scope in refused)
            raise ControlError(
                ControlErrorCode.SCOPE_NOT_ALLOWED,
                f"{names}: only keys on the append allowlist may have sync.append or sync.admin; "
                f"{pubkey.npub} is not on it (readers may have sync.subscribe and sync.checkpoint.write)",
            )
