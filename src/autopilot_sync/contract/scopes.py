"""The scopes a session token carries and how the sync module, control and the runtime read them from claims.

One definition: control grants these values (`control/policy.py`), the sync module's reducers check them
(`module/auth.py`), the runtime's API checks a producer's token with them. The claims come from a verified token
(`scopes`, or OAuth's `scope`; `streams` patterns: an id, `prefix*` or `*`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any


class Scope(enum.Enum):
    """What a session token may do; the value is the string in the token's `scopes` claim."""

    SUBSCRIBE = "sync.subscribe"
    CHECKPOINT_WRITE = "sync.checkpoint.write"
    APPEND = "sync.append"
    ADMIN = "sync.admin"


#: What a reader needs: connect as a reader (and see presence) and report its checkpoints.
READER_SCOPES = frozenset({Scope.SUBSCRIBE, Scope.CHECKPOINT_WRITE})
#: What a producer needs on top: publish events, grant readers, and administer streams (retention).
PRODUCER_SCOPES = frozenset({Scope.APPEND, Scope.ADMIN})


def scopes_of(claims: Mapping[str, Any]) -> frozenset[str]:
    """Scopes from the `scopes` claim (array or space-separated), falling back to OAuth's `scope`."""
    raw = claims.get("scopes", claims.get("scope"))
    if isinstance(raw, str):
        return frozenset(raw.split())
    if isinstance(raw, list | tuple):
        return frozenset(str(item) for item in raw)
    return frozenset()


def stream_allowed(claims: Mapping[str, Any], stream_id: str) -> bool:
    """Whether the `streams` claim covers a stream: exact ids, `prefix*` patterns or `*` (absent = all streams)."""
    patterns = claims.get("streams")
    if patterns is None:
        return True
    if isinstance(patterns, str):
        patterns = [patterns]
    for pattern in patterns:
        text = str(pattern)
        if text == "*" or text == stream_id or (text.endswith("*") and stream_id.startswith(text[:-1])):
            return True
    return False
