"""Retry classes of the publisher: pure functions, no I/O (the delay between attempts is `autopilot_sync.backoff`).

Every failed publish attempt is reduced to a `PublishFailure` by the host link; `classify` maps it to exactly one
`RetryClass`, and the publisher's reaction depends on the class only (DESIGN.md "Publishing"):

| class | reaction |
|---|---|
| transient | wait a capped full-jitter delay, then send the same batch again (same keys, same hashes) |
| duplicate | success: the host already holds these events (same key + same hash) |
| sequence_conflict | reconcile from the host's `stream_head`: events at or below its head are published |
| auth | refresh the token and try once more; failing again after a refresh makes it permanent |
| permanent | dead-letter the event with the reason; its stream stops there until an operator replays it |
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from autopilot_sync.contract.codes import SyncErrorCode, parse_error_code
from autopilot_sync.contract.errors import CodedError


class RetryClass(enum.Enum):
    """What the publisher does about a failed attempt."""

    TRANSIENT = "transient"
    DUPLICATE = "duplicate"
    SEQUENCE_CONFLICT = "sequence_conflict"
    AUTH = "auth"
    PERMANENT = "permanent"


class FailureKind(enum.Enum):
    """Where an attempt failed, as the host link saw it (before any interpretation)."""

    NETWORK = "network"
    """The connection could not be opened or was lost: the outcome of an in-flight call is unknown."""
    TIMEOUT = "timeout"
    """No answer in time: the outcome is unknown."""
    HOST_UNAVAILABLE = "host_unavailable"
    """The host answered with a 5xx status or refused to serve (starting, overloaded)."""
    INTERNAL_ERROR = "internal_error"
    """`ReducerOutcome::InternalError`: the host could not run the reducer (e.g. overload)."""
    AUTH_REJECTED = "auth_rejected"
    """The host refused the token (HTTP 401) or `client_connected` refused the connection."""
    REDUCER_ERROR = "reducer_error"
    """`ReducerOutcome::Err`: the module refused the call; the message starts with a `SyncErrorCode`."""
    PROTOCOL = "protocol"
    """The host sent something the protocol forbids; reconnecting is the only way on."""
    TOKEN_UNAVAILABLE = "token_unavailable"
    """Control could not be reached for a token (network, 5xx): like a host outage, it passes."""
    TOKEN_REFUSED = "token_refused"
    """Control refused to issue a token (4xx: key not allow-listed, bad proof): a refresh will not fix it."""


@dataclass(frozen=True, slots=True)
class PublishFailure:
    """One failed attempt: where it failed and the message to record (and show in the dead-letter list)."""

    kind: FailureKind
    message: str

    @property
    def error_code(self) -> SyncErrorCode | None:
        """The module's error code, for reducer errors."""
        return parse_error_code(self.message) if self.kind is FailureKind.REDUCER_ERROR else None


class LinkError(CodedError[FailureKind]):
    """A host call that failed; carries the failure as the retry classifier needs it (`code` is its kind)."""

    def __init__(self, failure: PublishFailure) -> None:
        super().__init__(failure.kind, failure.message)
        self.failure = failure


_TRANSIENT_KINDS = frozenset(
    {
        FailureKind.NETWORK,
        FailureKind.TIMEOUT,
        FailureKind.HOST_UNAVAILABLE,
        FailureKind.INTERNAL_ERROR,
        FailureKind.PROTOCOL,
        FailureKind.TOKEN_UNAVAILABLE,
    }
)

_CODE_CLASSES: dict[SyncErrorCode, RetryClass] = {
    SyncErrorCode.SEQUENCE_CONFLICT: RetryClass.SEQUENCE_CONFLICT,
    SyncErrorCode.UNAUTHORIZED: RetryClass.AUTH,
    SyncErrorCode.FORBIDDEN_STREAM: RetryClass.AUTH,
    SyncErrorCode.INVALID_EVENT: RetryClass.PERMANENT,
    SyncErrorCode.PAYLOAD_HASH_MISMATCH: RetryClass.PERMANENT,
    SyncErrorCode.PAYLOAD_TOO_LARGE: RetryClass.PERMANENT,
    SyncErrorCode.BATCH_TOO_LARGE: RetryClass.PERMANENT,
    SyncErrorCode.IDEMPOTENCY_CONFLICT: RetryClass.PERMANENT,
    # a fresh or reset database until its owner names the trusted issuer: the streams wait, nothing dead-letters
    SyncErrorCode.ISSUER_NOT_CONFIGURED: RetryClass.TRANSIENT,
}


def classify(failure: PublishFailure) -> RetryClass:
    """The one retry class of a failed attempt.

    A reducer error without one of our codes is permanent: retrying a refusal nobody understands would block the
    stream forever without anyone being told, while a dead letter is visible and replayable.
    """
    if failure.kind in _TRANSIENT_KINDS:
        return RetryClass.TRANSIENT
    if failure.kind is FailureKind.AUTH_REJECTED:
        return RetryClass.AUTH
    if failure.kind is FailureKind.TOKEN_REFUSED:
        return RetryClass.PERMANENT
    code = failure.error_code
    if code is None:
        return RetryClass.PERMANENT
    return _CODE_CLASSES.get(code, RetryClass.PERMANENT)


def is_outcome_unknown(failure: PublishFailure) -> bool:
    """Whether the batch may have committed although the attempt failed (the answer, not the call, was lost)."""
    return failure.kind in {FailureKind.NETWORK, FailureKind.TIMEOUT, FailureKind.PROTOCOL}
