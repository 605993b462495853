"""Which followed streams the desktop keeps subscribed live, so it never asks the host for more query sets than it
grants one connection (`AUTOPILOT_SYNC_HOST_MAX_QUERY_SETS_PER_CONNECTION`).

Every followed stream keeps its checkpoint and shows its head (the heads query set covers all of them); only the
`bound` most recently active ones (by their head's last change) hold a query set of their own. The selected stream is
always among them, so what the user looks at is live. A stream left out is "idle": when its head moves again it is the
most recently active one, so it is followed again from its checkpoint and the least recently active live one is
dropped. Pure functions, so the choice is tested without a host.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping


def live_streams(activity: Mapping[str, int], bound: int, keep: Collection[str] = ()) -> frozenset[str]:
    """The streams to hold live: those in `keep` (that are followed), then the most recently active, `bound` at most.

    `activity` maps every followed stream to its head's last change (higher is more recent; 0 when no head is known
    yet). Ties go to the smaller stream id, so the choice is stable.
    """
    kept = [stream_id for stream_id in keep if stream_id in activity][:bound]
    rest = sorted((s for s in activity if s not in kept), key=lambda s: (-activity[s], s))
    return frozenset(kept + rest[: max(bound - len(kept), 0)])


def refusal_notice(stream_id: str, reason: str) -> str:
    """The one-line status when the host refuses a stream's query set anyway (its cap is below the desktop's bound)."""
    one_line = " ".join(reason.split())
    return f"host refused to follow {stream_id} live: {one_line} (lower AUTOPILOT_SYNC_DESKTOP_MAX_LIVE_STREAMS)"
