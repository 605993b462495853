"""A library's submodules imported before its `__init__` (`partial_package.py`): the host's metric classes without
prometheus_client's text exposition, which the first scrape (or a package-level name) brings with the same classes.

Each check runs in a fresh interpreter: this test process imported prometheus_client whole long ago.
"""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import json, sys
from autopilot_sync.partial_package import complete, import_without_init, pending
partial = import_without_init("prometheus_client", ("registry", "metrics", "metrics_core"))
from prometheus_client.metrics import Counter
from prometheus_client.registry import CollectorRegistry
registry = CollectorRegistry()
Counter("demo_total", "A counter.", registry=registry).inc(3)
before = {"partial": partial, "pending": pending("prometheus_client"),
          "exposition": "prometheus_client.exposition" in sys.modules}
from prometheus_client import generate_latest  # a package-level name: completes the package
import prometheus_client
print(json.dumps({
    "before": before,
    "pending_after": pending("prometheus_client"),
    "text": generate_latest(registry).decode(),
    "same_classes": prometheus_client.Counter is Counter and prometheus_client.CollectorRegistry is CollectorRegistry,
    "again_same": complete("prometheus_client") is prometheus_client,
    "whole_again": import_without_init("prometheus_client", ("metrics",)),
}))
"""


def test_metric_classes_import_without_the_exposition_until_a_package_name_is_reached() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=120)
    seen = json.loads(done.stdout)
    assert seen["before"] == {"partial": True, "pending": True, "exposition": False}
    assert seen["pending_after"] is False
    assert "demo_total 3.0" in seen["text"]
    assert seen["same_classes"] and seen["again_same"]
    assert seen["whole_again"] is False  # an imported package is left as it is
