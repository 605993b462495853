"""The publish lane's drift check reads the documents it has in hand (V9 or V10) and reports bad ones as DriftError.

The diff cases themselves live with the diff, in tests/spacetime/test_moduledef_diff.py.
"""

from __future__ import annotations

import pytest

from autopilot_sync.module import module as sync_module
from autopilot_sync.ops.drift import DriftError, compare
from autopilot_sync.spacetime import moduledef


def test_a_live_v10_document_against_the_local_v9_one_has_no_drift() -> None:
    diff = compare(moduledef.to_json(sync_module.module_def(), 10), sync_module.schema_json())
    assert diff.changes == ()
    assert diff.head_hash == sync_module.schema_hash()


def test_a_document_that_is_not_a_schema_is_a_drift_error() -> None:
    with pytest.raises(DriftError, match="not a RawModuleDefV9 document"):
        compare({"tables": []}, sync_module.schema_json())
