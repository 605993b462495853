"""The sync module's refusal: a reducer error carrying one of the contract's codes (`contract/codes.py`).

Every reducer error message starts with `<code>: ` so clients classify failures without parsing prose. Documented in
docs/protocol.md.
"""

from __future__ import annotations

from autopilot_sync.bindings.reducers import ReducerError
from autopilot_sync.contract.codes import SyncErrorCode
from autopilot_sync.contract.errors import CodedError


class SyncError(CodedError[SyncErrorCode], ReducerError):
    """A reducer refusal with a code; `str()` is `<code>: <detail>`."""

    def __init__(self, code: SyncErrorCode, detail: str) -> None:
        super().__init__(code, detail)
        self.detail = detail
