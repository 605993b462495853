"""Schema drift for the publish lane: two schema documents in, the structural diff of `spacetime.moduledef` out.

The comparison itself (what changed, what breaks) lives with the module definition in `spacetime/moduledef/diff.py`,
where the host's upgrade check uses it too. This side reads the documents the lane has in hand (the one the live
host serves at `/v1/database/:name/schema`, V9 or V10, and the local module's `schema_json()`), hashes them as they
are (so a ledger entry names exactly what a host served; either index-algorithm form of V9 hashes the same, see
`moduledef.v9.legacy_hash_form`), and turns a document that is not a schema into a
`DriftError` the CLI reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autopilot_sync.spacetime import moduledef
from autopilot_sync.spacetime.moduledef import ModuleDefError, schema_hash
from autopilot_sync.spacetime.moduledef.diff import SchemaDiff, changes


class DriftError(ValueError):
    """A document that is not a `RawModuleDef` V9 or V10 schema in the shape our host and SpacetimeDB serve."""


def compare(base: Mapping[str, Any], head: Mapping[str, Any]) -> SchemaDiff:
    """Every change from the `base` document to the `head` document (see `spacetime/moduledef/diff.py`)."""
    try:
        found = changes(moduledef.from_json(dict(base)), moduledef.from_json(dict(head)))
    except ModuleDefError as exc:
        raise DriftError(str(exc)) from None
    return SchemaDiff(schema_hash(base), schema_hash(head), found)
