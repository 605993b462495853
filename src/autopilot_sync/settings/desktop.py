"""Settings of the desktop client (`AUTOPILOT_SYNC_DESKTOP_*`)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from autopilot_sync.settings.base import Kind, ServiceSettings, setting
from autopilot_sync.settings.fields import (
    BaseUrl,
    Count,
    DatabaseName,
    FilePath,
    ListenAddress,
    Names,
    Seconds,
    parse_listen,
)


def _loopback_listen_or_off(value: object) -> ListenAddress | None:
    """Empty (or unset) is off; otherwise `host:port` on a loopback address (the endpoint has no authentication)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    address = parse_listen(value)
    if address.host != "localhost":
        try:
            loopback = ipaddress.ip_address(address.host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError("expected a loopback host:port like 127.0.0.1:9464 (or empty for off)")
    return address


OptionalLoopbackListen: Kind[ListenAddress | None] = Kind(
    "loopback host:port, or empty for off", _loopback_listen_or_off
)
"""A loopback listening address, written `host:port`; empty turns the listener off."""

_OFF: Any = ""
"""The default as written in the environment (empty); validation turns it into None."""


class DesktopSettings(ServiceSettings, service="desktop"):
    """The desktop app: where it gets tokens and subscribes, where it keeps keys and checkpoints, what it follows."""

    control_url: str = setting(
        BaseUrl, default="http://127.0.0.1:3100", description="Base URL of the control service issuing its tokens."
    )
    spacetime_base_url: str = setting(
        BaseUrl, default="http://127.0.0.1:3000", description="Base URL of the Spacetime host it subscribes to."
    )
    database: str = setting(DatabaseName, default="autopilot-sync", description="Database it subscribes to.")
    config_dir: Path = setting(
        FilePath,
        default=Path("~/.config/autopilot-sync"),
        description="Directory of the user's key and stream checkpoints.",
    )
    streams: tuple[str, ...] = setting(
        Names, default=(), description="Stream ids to follow; empty follows every stream."
    )
    max_live_streams: int = setting(
        Count,
        default=48,
        description="Most followed streams subscribed live at once (the least recently active others show their "
        "head only, and resume from their checkpoint when it moves); keep it below the host's query sets per "
        "connection minus 2.",
    )
    ack_interval_seconds: int = setting(
        Seconds, default=1, description="Least time between two checkpoint reports (ack_checkpoint) of one stream."
    )
    reconnect_max_delay_seconds: int = setting(
        Seconds, default=30, description="Longest wait between reconnect attempts (full-jitter backoff up to this cap)."
    )
    metrics_listen: ListenAddress | None = setting(
        OptionalLoopbackListen,
        default=_OFF,
        description="Loopback address (like 127.0.0.1:9464) serving the desktop's own GET /metrics; empty is off.",
    )
