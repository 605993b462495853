"""Who is calling: the verified identity, connection and token claims a reducer sees."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from autopilot_sync.spacetime.values import ConnectionId, Identity


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated party behind a reducer call or a connection.

    `claims` are the verified JWT claims (empty for the host itself, e.g. scheduled reducers and crash cleanup):
    reducers authorize from them, never from arguments a client supplies.
    """

    identity: Identity
    connection_id: ConnectionId | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)
