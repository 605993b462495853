"""Which scopes on which streams a proven Nostr key may hold: the grants of control's policy.

A policy is a list of grants, each giving some keys (or any key, `*`) some scopes on some stream patterns. A token
request is granted whole or refused whole, never narrowed: a scope no grant gives the key is `scope_not_allowed`, a
stream pattern its grants do not cover for every requested scope is `stream_not_allowed` (both 403). A request
without `streams` gets what the policy gives: the patterns covered for every requested scope. A client that
silently got fewer rights than it asked for would fail later, far from the cause (a publisher whose appends are
rejected one by one by the host).

The token's `streams` claim bounds what the key may write (append, checkpoints, administration) and which streams
it may be made a reader of; *reading* is decided in the sync module by the stream's `stream_reader` rows
(row-level security), which the producer writes when it creates the stream (docs/control.md, docs/security.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from autopilot_sync.contract.scopes import PRODUCER_SCOPES, READER_SCOPES, Scope
from autopilot_sync.control.errors import ControlError, ControlErrorCode
from autopilot_sync.nostr.keys import PublicKey

#: In a grant's `keys`: any key with a valid proof.
ANY_KEY = "*"


def pattern_covers(granted: str, requested: str) -> bool:
    """Whether a granted stream pattern covers a requested one (`*`, an id, or `prefix*`, as in the `streams` claim)."""
    if granted == "*" or granted == requested:
        return True
    return granted.endswith("*") and requested.removesuffix("*").startswith(granted[:-1])


@dataclass(frozen=True, slots=True)
class Grant:
    """Some keys (hex, or `*` for any proven key) may have these scopes on these stream patterns."""

    keys: frozenset[str]
    scopes: frozenset[Scope]
    streams: tuple[str, ...]

    def applies_to(self, pubkey: PublicKey) -> bool:
        """Whether the grant names this key (or any key)."""
        return ANY_KEY in self.keys or pubkey.hex in self.keys


@dataclass(frozen=True, slots=True)
class ScopePolicy:
    """The grants of one control service: from its policy file, or the allowlist default (`from_allowlist`)."""

    grants: tuple[Grant, ...]

    @classmethod
    def from_allowlist(cls, pubkeys: Iterable[str]) -> ScopePolicy:
        """The policy without a policy file: any proven key may read, keys on the append allowlist may do anything.

        Any key may hold reader scopes on `*` here; what it actually reads is still only what it was made a reader
        of (`stream_reader`). A deployment that also wants to choose who may connect and see presence writes a
        policy file.
        """
        producers = frozenset(key.lower() for key in pubkeys)
        grants = [Grant(frozenset({ANY_KEY}), READER_SCOPES, ("*",))]
        if producers:
            grants.append(Grant(producers, READER_SCOPES | PRODUCER_SCOPES, ("*",)))
        return cls(tuple(grants))

    def allowed(self, pubkey: PublicKey) -> frozenset[Scope]:
        """Every scope `pubkey` may be granted (on some stream)."""
        return frozenset(scope for grant in self.grants if grant.applies_to(pubkey) for scope in grant.scopes)

    def patterns(self, pubkey: PublicKey, scope: Scope) -> tuple[str, ...]:
        """The stream patterns on which `pubkey` may hold `scope`."""
        found = (p for g in self.grants if g.applies_to(pubkey) and scope in g.scopes for p in g.streams)
        return tuple(dict.fromkeys(found))

    def check(self, pubkey: PublicKey, requested: Iterable[Scope]) -> None:
        """Raise `scope_not_allowed` (403) unless every requested scope is allowed for `pubkey` on some stream."""
        refused = [scope for scope in requested if scope not in self.allowed(pubkey)]
        if refused:
            names = ", ".join(scope.value for scope in refused)
            raise ControlError(
                ControlErrorCode.SCOPE_NOT_ALLOWED,
                f"{names}: control's policy grants {pubkey.npub} no such scope "
                f"(it may have: {', '.join(sorted(s.value for s in self.allowed(pubkey))) or 'nothing'})",
            )

    def decide(self, pubkey: PublicKey, scopes: Sequence[Scope], streams: Sequence[str] | None) -> tuple[str, ...]:
        """The `streams` claim for this request, or `ControlError` (403) when it asks for more than the policy gives.

        With `streams`, every pattern must be covered for every requested scope and is granted as asked. Without,
        the claim is every granted pattern covered for all requested scopes (the most a token with these scopes may
        cover), with patterns inside another dropped; none is `stream_not_allowed`.
        """
        self.check(pubkey, scopes)
        per_scope = {scope: self.patterns(pubkey, scope) for scope in scopes}

        def covered(pattern: str) -> bool:
            return all(any(pattern_covers(g, pattern) for g in granted) for granted in per_scope.values())

        if streams is not None:
            refused = [pattern for pattern in streams if not covered(pattern)]
            if refused:
                raise ControlError(
                    ControlErrorCode.STREAM_NOT_ALLOWED,
                    f"{', '.join(refused)}: control's policy does not give {pubkey.npub} "
                    f"{' + '.join(s.value for s in scopes)} there (ask without 'streams' to get what it gives)",
                )
            return tuple(streams)
        candidates = [p for granted in per_scope.values() for p in granted if covered(p)]
        unique = list(dict.fromkeys(candidates))
        widest = [p for p in unique if not any(q != p and pattern_covers(q, p) for q in unique)]
        if not widest:
            raise ControlError(
                ControlErrorCode.STREAM_NOT_ALLOWED,
                f"control's policy gives {pubkey.npub} no stream on which it may hold all of "
                f"{', '.join(s.value for s in scopes)}",
            )
        return tuple(widest)
