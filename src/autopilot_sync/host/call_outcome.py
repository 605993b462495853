"""How one reducer call ended: `CallStatus` and `CallOutcome`, the value the engine hands every layer that answers.

Its own module so the layers that only read outcomes (the WebSocket session, HTTP routes, metrics) need not import
the engine that produces them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from autopilot_sync.host.transaction import CommittedTx
from autopilot_sync.spacetime.values import Timestamp


class CallStatus(enum.Enum):
    """How a reducer call ended; the HTTP and WebSocket layers map each to their own wire form."""

    COMMITTED = "committed"
    USER_ERROR = "user_error"
    INTERNAL_ERROR = "internal_error"
    NO_SUCH_REDUCER = "no_such_reducer"
    BAD_ARGUMENTS = "bad_arguments"
    LIFECYCLE_REDUCER = "lifecycle_reducer"


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """The result of one reducer call.

    `offset` is the engine offset the outcome observed: its own commit's when it wrote, else the newest commit the
    reducer could see (a no-op success such as a duplicate append, or an error whose text reveals state). An answer
    reporting the outcome must not leave the host before that offset is durable (`HostEngine.durable_future`).
    """

    status: CallStatus
    timestamp: Timestamp
    message: str = ""
    tx: CommittedTx | None = None
    duration_micros: int = 0
    offset: int = 0
