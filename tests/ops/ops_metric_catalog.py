"""Every metric series name the code can export, built from the services' real metric classes (no hand list)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from autopilot_sync.control.metrics import ControlMetrics
from autopilot_sync.desktop.metrics import DesktopMetrics
from autopilot_sync.exporter.service import SyncTablesCollector
from autopilot_sync.host.metrics import HostMetrics
from autopilot_sync.runtime.metrics import RuntimeMetrics

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
    "summary": ("", "_sum", "_count", "_created"),
}


class _ExporterFamilies(Collector):
    """The exporter's families as its collector declares them (its live samples need a host)."""

    def collect(self) -> Iterable[Metric]:
        return SyncTablesCollector.families()


def registries() -> dict[str, CollectorRegistry]:
    """One registry per service, filled exactly as the services fill theirs."""
    host = HostMetrics()
    host.track_live(lambda: 0.0, lambda: 0.0, lambda: 0.0)
    exporter = CollectorRegistry()
    exporter.register(_ExporterFamilies())
    return {
        "host": host.registry,
        "exporter": exporter,
        "control": ControlMetrics().registry,
        "runtime": RuntimeMetrics().registry,
        "desktop": DesktopMetrics().registry,
    }


def families() -> dict[str, str]:
    """Family name (as documented: counters with `_total`) -> type."""
    out: dict[str, str] = {}
    for registry in registries().values():
        for family in registry.collect():
            name = family.name + ("_total" if family.type == "counter" else "")
            out[name] = family.type
    return out


def series_names() -> set[str]:
    """Every sample name a scrape can contain (`_total`, `_bucket`, ... included)."""
    names: set[str] = set()
    for registry in registries().values():
        for family in registry.collect():
            names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
            names.update(sample.name for sample in family.samples)
    return names
