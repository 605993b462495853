"""The host is a generic engine: its source names no table of the sync module (issue 17).

What the host needs to know about a module it learns from the module's own description (tables, reducers,
visibility filters); numbers about the sync tables come from the exporter, which reads them over the protocol
(`autopilot_sync/exporter/`). A table name in `host/` means the host grew a special case for one module again.
"""

from __future__ import annotations

import re
from pathlib import Path

import autopilot_sync.host
from autopilot_sync.module import module as sync_module

HOST = Path(autopilot_sync.host.__file__).parent


def test_the_host_source_names_no_table_of_the_sync_module() -> None:
    tables = sorted(sync_module.tables)
    assert {"sync_event", "stream_head", "active_connection", "sync_config"} <= set(tables)
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, tables)) + r")\b")
    found = [
        f"{path.relative_to(HOST.parent)}:{number}: {match.group(1)}"
        for path in sorted(HOST.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        for match in pattern.finditer(line)
    ]
    assert found == [], "the host names sync-module tables:\n" + "\n".join(found)
