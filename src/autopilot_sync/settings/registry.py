"""Every service's settings class in one place, so docs and checks can enumerate the whole env contract."""

from __future__ import annotations

from autopilot_sync.settings.base import ServiceSettings
from autopilot_sync.settings.control import ControlSettings
from autopilot_sync.settings.desktop import DesktopSettings
from autopilot_sync.settings.exporter import ExporterSettings
from autopilot_sync.settings.host import HostSettings
from autopilot_sync.settings.ops import OpsSettings
from autopilot_sync.settings.runtime import RuntimeSettings

SERVICES: tuple[type[ServiceSettings], ...] = (
    HostSettings,
    ControlSettings,
    RuntimeSettings,
    DesktopSettings,
    ExporterSettings,
    OpsSettings,
)
"""All settings classes, in the order the docs list them; a new service adds its class here."""


def by_name() -> dict[str, type[ServiceSettings]]:
    """Settings classes keyed by service name (`host`, `control`, ...)."""
    return {cls.service_name(): cls for cls in SERVICES}
