"""The one coded-error base: a closed-set code for programs, a message for people, `str()` = `<code>: <message>`.

Every package that refuses something with a stable code (the sync module's reducers, the SDK's protocol checks, the
control service, the host's token checks, the Nostr package) derives its own exception from this base, so callers
branch on `error.code` the same way everywhere and the text shape is defined once.
"""

from __future__ import annotations

import enum
from typing import Generic, TypeVar

CodeT = TypeVar("CodeT", bound=enum.Enum)


class CodedError(Exception, Generic[CodeT]):
    """An exception carrying `code` (an enum member whose value is a stable string) and `message` (for people)."""

    def __init__(self, code: CodeT, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code: CodeT = code
        self.message = message
