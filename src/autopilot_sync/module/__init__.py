"""The canonical sync module: presence, ordered streams, checkpoints and retention, as tables and reducers.

`autopilot-sync host` runs it by default (`AUTOPILOT_SYNC_HOST_MODULE=autopilot_sync.module`).
"""

from autopilot_sync.module import reducers as _reducers  # noqa: F401  (registers the reducers)
from autopilot_sync.module import retention as _retention  # noqa: F401  (after them: its table and reducers come last)
from autopilot_sync.module.schema import module

__all__ = ["module"]
