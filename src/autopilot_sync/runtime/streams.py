"""Stream names and event kinds the runtime publishes: one closed set, validated before anything is stored.

Producers name runs, workers and users with ids; the runtime turns those into stream ids, so the naming scheme lives
here once and a malformed id can never become a stream (ids may not contain the `.` that separates name parts).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

from autopilot_sync.contract.errors import CodedError

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")

RUN_PREFIX = "runtime.run."
WORKER_PREFIX = "runtime.worker."
FLEET_PREFIX = "runtime.fleet.user."


class RunEventKind(enum.Enum):
    """What can happen in an agent run; the value is the `kind` column of `sync_event`."""

    STARTED = "run.started"
    MESSAGE_DELTA = "run.message.delta"
    TOOL_CALL = "run.tool.call"
    FINISHED = "run.finished"
    CANCEL_REQUESTED = "run.cancel_requested"


class WorkerState(enum.Enum):
    """A worker's lifecycle state; its snapshot's kind is `worker.<state>`."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def kind(self) -> str:
        """The event kind of a snapshot in this state."""
        return f"worker.{self.value}"


class InputErrorCode(enum.Enum):
    """Why the runtime refuses a producer request (the JSON `error` field; docs/runtime.md lists each)."""

    INVALID_JSON = "invalid_json"
    INVALID_BODY = "invalid_body"
    INVALID_KIND = "invalid_kind"
    INVALID_RUN_ID = "invalid_run_id"
    INVALID_WORKER_ID = "invalid_worker_id"
    INVALID_USER_ID = "invalid_user_id"
    INVALID_PAYLOAD = "invalid_payload"
    INVALID_REQUEST_ID = "invalid_request_id"
    TOO_MANY_EVENTS = "too_many_events"
    EMPTY_APPEND = "empty_append"
    REQUEST_ID_CONFLICT = "request_id_conflict"
    PAYLOAD_TOO_LARGE = "payload_too_large"


class InvalidInputError(CodedError[InputErrorCode], ValueError):
    """A producer request the runtime refuses before storing anything; `code.value` is the JSON `error` field."""


def check_id(what: str, value: object) -> str:
    """`value` if it is a valid run/worker/user id (1-128 of `A-Z a-z 0-9 _ -`, starting alphanumeric)."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise InvalidInputError(
            InputErrorCode(f"invalid_{what}"), f"{what} must be 1-128 characters of A-Z a-z 0-9 _ - (got {value!r})"
        )
    return value


def run_stream(run_id: str) -> str:
    """`runtime.run.<run_id>.events`: every event of one agent run, in order."""
    return f"{RUN_PREFIX}{check_id('run_id', run_id)}.events"


def worker_stream(worker_id: str) -> str:
    """`runtime.worker.<worker_id>.lifecycle`: the lifecycle snapshots of one worker."""
    return f"{WORKER_PREFIX}{check_id('worker_id', worker_id)}.lifecycle"


def fleet_stream(user_id: str) -> str:
    """`runtime.fleet.user.<user_id>.workers`: snapshots of all of one user's workers (a fleet view)."""
    return f"{FLEET_PREFIX}{check_id('user_id', user_id)}.workers"


def run_event_kind(value: object) -> RunEventKind:
    """Parse a run event kind, refusing anything outside the closed set."""
    try:
        return RunEventKind(value)
    except ValueError:
        allowed = ", ".join(kind.value for kind in RunEventKind)
        raise InvalidInputError(InputErrorCode.INVALID_KIND, f"kind must be one of {allowed} (got {value!r})") from None


def worker_state(value: object) -> WorkerState:
    """Parse a worker state (`running` or `worker.running`), refusing anything outside the closed set."""
    text = value.removeprefix("worker.") if isinstance(value, str) else value
    try:
        return WorkerState(text)
    except ValueError:
        allowed = ", ".join(state.kind for state in WorkerState)
        raise InvalidInputError(
            InputErrorCode.INVALID_KIND, f"state must be one of {allowed} (got {value!r})"
        ) from None


@dataclass(frozen=True, slots=True)
class NewEvent:
    """One event to append: the stream it goes to, its kind and its JSON payload (canonicalised at append time)."""

    stream_id: str
    kind: str
    payload: Any


def run_event(run_id: str, kind: object, data: object) -> NewEvent:
    """A run event: payload `{"run_id", "type", "data"}` so a reader of the stream never needs the stream name."""
    parsed = run_event_kind(kind)
    return NewEvent(run_stream(run_id), parsed.value, {"run_id": run_id, "type": parsed.value, "data": data})


def worker_snapshot(worker_id: str, user_id: str, state: object, detail: object) -> list[NewEvent]:
    """One lifecycle snapshot, appended to the worker's stream and to its user's fleet stream (same payload)."""
    parsed = worker_state(state)
    payload = {"worker_id": worker_id, "user_id": user_id, "state": parsed.value, "detail": detail}
    return [
        NewEvent(worker_stream(worker_id), parsed.kind, payload),
        NewEvent(fleet_stream(user_id), parsed.kind, payload),
    ]
