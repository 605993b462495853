"""One coded-error base: every exception with a closed-set code is a `CodedError`, texts `<code>: <message>`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from autopilot_sync.client.errors import ProtocolError, ProtocolErrorKind
from autopilot_sync.contract.codes import SyncErrorCode, parse_error_code
from autopilot_sync.contract.errors import CodedError
from autopilot_sync.control.errors import ControlError, ControlErrorCode
from autopilot_sync.module.errors import SyncError
from autopilot_sync.nostr.errors import (
    AuthErrorCode,
    EventErrorCode,
    KeyErrorCode,
    NostrAuthError,
    NostrEventError,
    NostrKeyError,
    RelayAuthError,
    RelayAuthErrorCode,
)
from autopilot_sync.runtime.access import AccessDeniedError, AccessErrorCode
from autopilot_sync.runtime.retry import FailureKind, LinkError, PublishFailure
from autopilot_sync.runtime.streams import InputErrorCode, InvalidInputError

SRC = Path(__file__).parents[2] / "src" / "autopilot_sync"

EXAMPLES: list[CodedError[Any]] = [
    SyncError(SyncErrorCode.SEQUENCE_CONFLICT, "stream s expected_seq=5 head_seq=3"),
    ControlError(ControlErrorCode.BUSY, "replay memory full", retry_after=2),
    ProtocolError(ProtocolErrorKind.BAD_ROW, "row 3 of person"),
    NostrKeyError(KeyErrorCode.INVALID_HEX, "not hex"),
    NostrEventError(EventErrorCode.BAD_ID, "id mismatch", field="id"),
    NostrAuthError(AuthErrorCode.REPLAYED, "seen"),
    RelayAuthError(RelayAuthErrorCode.WRONG_CHALLENGE, "other challenge"),
    LinkError(PublishFailure(FailureKind.TIMEOUT, "no answer in 5 s")),
    InvalidInputError(InputErrorCode.INVALID_KIND, "kind must be one of run.started"),
    AccessDeniedError(AccessErrorCode.FORBIDDEN_STREAM, "the token does not cover stream s"),
]


@pytest.mark.parametrize("error", EXAMPLES, ids=lambda error: type(error).__name__)
def test_every_coded_error_reads_code_colon_message(error: CodedError[Any]) -> None:
    assert isinstance(error, CodedError)
    assert str(error) == f"{error.code.value}: {error.message}"


def test_a_sync_error_is_classified_back_to_its_code_from_its_text() -> None:
    error = SyncError(SyncErrorCode.IDEMPOTENCY_CONFLICT, "key k")
    assert parse_error_code(str(error)) is SyncErrorCode.IDEMPOTENCY_CONFLICT
    assert error.detail == error.message == "key k"


def test_no_exception_spells_the_code_message_text_by_hand() -> None:
    """A new coded exception derives from `CodedError` instead of writing `f"{code.value}: {message}"` again."""
    by_hand = re.compile(r"super\(\)\.__init__\(f\"\{[\w.]+\}: \{\w+\}\"\)")
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if by_hand.search(p.read_text())]
    offenders.remove("contract/errors.py")  # the one place that spells it
    assert offenders == []
