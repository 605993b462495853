"""Every metric series name the code can export, built from the services' real metric classes (no hand list)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from autopilot_sync.control.metrics import ControlMetrics
from autopilot_sync.desktop.metrics import DesktopMetrics
from autopilot_sync.host.datastore import Datastore
from autopilot_sync.host.metrics import HostMetrics
from autopilot_sync.host.sync_metrics import register_sync_metrics
from autopilot_sync.host.system_tables import SYSTEM_TABLES
from autopilot_sync.module import module as sync_module
from autopilot_sync.runtime.metrics import RuntimeMetrics

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
    "summary": ("", "_sum", "_count", "_created"),
}


def registries() -> dict[str, CollectorRegistry]:
    """One registry per service, filled exactly as the services fill theirs."""
    host = HostMetrics()
    host.track_live(lambda: 0.0, lambda: 0.0, lambda: 0.0)
    assert register_sync_metrics(host.registry, Datastore(sync_module, SYSTEM_TABLES)) is not None
    return {
        "host": host.registry,
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
