"""Prometheus counters of the control service, in a registry of its own (one per app, so tests never collide).

`client_kind` is a label, and clients choose it; to keep the number of series bounded, kinds outside
`KNOWN_CLIENT_KINDS` are counted as `other` (the token itself still carries the real value).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from autopilot_sync.control.errors import ControlErrorCode

#: Client kinds counted under their own label value.
KNOWN_CLIENT_KINDS = frozenset({"desktop", "runtime", "cli", "web", "test"})
#: The content type of `GET /metrics`.
METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST


class ControlMetrics:
    """Tokens issued (by client kind) and refused (by reason)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.issued = Counter(
            "autopilot_sync_control_tokens_issued",
            "Session tokens signed, by client kind.",
            ["client_kind"],
            registry=self.registry,
        )
        self.refused = Counter(
            "autopilot_sync_control_tokens_refused",
            "Token requests refused, by error code.",
            ["reason"],
            registry=self.registry,
        )
        for code in ControlErrorCode:  # every reason visible at 0, so alerts can use rate() from the start
            self.refused.labels(reason=code.value)

    def token_issued(self, client_kind: str) -> None:
        """Count one signed token."""
        label = client_kind if client_kind in KNOWN_CLIENT_KINDS else "other"
        self.issued.labels(client_kind=label).inc()

    def token_refused(self, code: ControlErrorCode) -> None:
        """Count one refusal."""
        self.refused.labels(reason=code.value).inc()

    def exposition(self) -> bytes:
        """The text exposition format served at `/metrics`."""
        return generate_latest(self.registry)
