"""A compiled visibility filter is reused only while it still describes the datastore's tables.

The compiled-rule cache is keyed by the module object; a publish replaces the datastore's tables (and may keep the
module object, e.g. the same Python module published again with `delete_data`). A rule compiled against the old
tables must not be served for the new ones: it would filter rows by positions of a table that no longer exists.
"""

from __future__ import annotations

from autopilot_sync.bindings.module import Module
from autopilot_sync.host.datastore import Datastore
from autopilot_sync.host.hosted_module import PythonModule
from autopilot_sync.host.sql.compile import _rule
from autopilot_sync.host.sql.plan import SqlContext
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime.values import Identity


def _module() -> PythonModule:
    module = Module("rule_cache", version="1")
    module.table("secret", [("id", at.U64), ("owner", at.IDENTITY)], primary_key="id")
    module.client_visibility_filter("secret", "SELECT * FROM secret WHERE owner = :sender")
    return PythonModule(module)


def test_a_rule_compiled_for_replaced_tables_is_compiled_again_for_the_new_ones() -> None:
    hosted = _module()
    reader = Identity(7)
    before = Datastore(hosted)
    old_rule = _rule("secret", SqlContext(before, sender=reader))
    assert old_rule is not None and old_rule.table is before["secret"].table
    assert _rule("secret", SqlContext(before, sender=reader)) is old_rule  # cached while current

    after = Datastore(hosted)  # what a publish does: the same module object, new tables
    new_rule = _rule("secret", SqlContext(after, sender=reader))
    assert new_rule is not None
    assert new_rule.table is after["secret"].table
    assert new_rule is not old_rule
