"""The structural diff of two module definitions: compatible additions pass, breaking changes are named, the diff
reads like a review (moved from tests/ops/test_drift.py with the diff itself)."""

from __future__ import annotations

import pytest

from autopilot_sync.bindings.module import Module
from autopilot_sync.module import module as sync_module
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime.moduledef import ModuleDefError, schema_hash
from autopilot_sync.spacetime.moduledef import from_json as read
from autopilot_sync.spacetime.moduledef.diff import ChangeKind, Severity, compare


def build(
    *, extra_table: bool = False, extra_reducer: bool = False, extra_index: bool = False, **edits: bool
) -> Module:
    """A small module; each flag applies one change to the base shape."""
    module = Module("shop", version="1")
    if extra_table:
        module.table("audit", [("id", at.U64), ("note", at.STRING)], primary_key="id")
    item_columns = [("id", at.U64), ("name", at.STRING), ("price", at.U32)]
    if edits.get("drop_column"):
        item_columns = item_columns[:2]
    if edits.get("rename_column"):
        item_columns[1] = ("title", at.STRING)
    if edits.get("retype_column"):
        item_columns[2] = ("price", at.U64)
    if edits.get("add_column") or edits.get("add_column_with_default"):
        item_columns.append(("stock", at.U32))
    if edits.get("insert_column_with_default"):
        item_columns.insert(1, ("stock", at.U32))
    defaults = {"stock": 0} if edits.get("add_column_with_default") or edits.get("insert_column_with_default") else {}
    module.table("item", item_columns, primary_key="id", indexes=[("name",)] if extra_index else [], defaults=defaults)
    if not edits.get("drop_table"):
        module.table("tag", [("item_id", at.U64), ("tag", at.STRING)], indexes=[("item_id",)])

    def noop(ctx: object, *args: object) -> None:
        return None

    params = [("id", at.U64), ("name", at.STRING)]
    if edits.get("change_params"):
        params = [("id", at.U64)]
    module.reducer(*params, name="add_item")(noop)
    if not edits.get("drop_reducer"):
        module.reducer(("id", at.U64), name="remove_item")(noop)
    if extra_reducer:
        module.reducer(name="ping")(noop)
    return module


def kinds(**edits: bool) -> dict[ChangeKind, Severity]:
    diff = compare(build().module_def(), build(**edits).module_def())
    return {change.kind: change.severity for change in diff.changes}


def test_identical_schemas_have_no_drift() -> None:
    diff = compare(build().module_def(), build().module_def())
    assert diff.identical and not diff.changes
    assert "none" in diff.render()


def test_schema_hash_of_the_served_document_equals_the_modules_own() -> None:
    assert schema_hash(sync_module.schema_json()) == sync_module.schema_hash()


@pytest.mark.parametrize(
    ("edit", "kind"),
    [
        ("extra_table", ChangeKind.TABLE_ADDED),
        ("extra_reducer", ChangeKind.REDUCER_ADDED),
        ("extra_index", ChangeKind.INDEX_ADDED),
        ("add_column_with_default", ChangeKind.COLUMN_ADDED_WITH_DEFAULT),
    ],
)
def test_additions_are_compatible(edit: str, kind: ChangeKind) -> None:
    assert kinds(**{edit: True}) == {kind: Severity.COMPATIBLE}


@pytest.mark.parametrize(
    ("edit", "kind"),
    [
        ("drop_column", ChangeKind.COLUMN_REMOVED),
        ("rename_column", ChangeKind.COLUMN_RENAMED),
        ("retype_column", ChangeKind.COLUMN_TYPE_CHANGED),
        ("add_column", ChangeKind.COLUMN_ADDED),
        ("insert_column_with_default", ChangeKind.COLUMN_ADDED),
        ("drop_table", ChangeKind.TABLE_REMOVED),
        ("drop_reducer", ChangeKind.REDUCER_REMOVED),
        ("change_params", ChangeKind.REDUCER_PARAMS_CHANGED),
    ],
)
def test_breaking_changes_are_named(edit: str, kind: ChangeKind) -> None:
    assert kinds(**{edit: True}) == {kind: Severity.BREAKING}


def test_removing_an_index_is_an_automatic_migration_as_on_spacetimedb() -> None:
    diff = compare(build(extra_index=True).module_def(), build().module_def())
    assert diff.breaking == ()
    assert [c.kind for c in diff.compatible] == [ChangeKind.INDEX_REMOVED]


def test_a_new_table_before_others_does_not_look_like_type_changes() -> None:
    # the new table takes typespace slot 0, so every other table's row type ref shifts by one
    diff = compare(build().module_def(), build(extra_table=True).module_def())
    assert [c.kind for c in diff.changes] == [ChangeKind.TABLE_ADDED]


def test_the_diff_reads_like_a_review() -> None:
    diff = compare(build().module_def(), build(extra_table=True, retype_column=True, drop_reducer=True).module_def())
    text = diff.render()
    assert "1 compatible, 2 breaking" in text
    assert "+ table audit: new table (id: U64, note: String) [compatible]" in text
    assert "~ column item.price: type U32 -> U64 [breaking]" in text
    assert "- reducer remove_item: reducer removed (was remove_item(id: U64)) [breaking]" in text


def test_rename_is_told_apart_from_remove_plus_add() -> None:
    diff = compare(build().module_def(), build(rename_column=True).module_def())
    assert [c.render() for c in diff.changes] == ["  ~ column item.name: renamed to title [breaking]"]


def test_a_document_that_is_not_a_schema_is_refused() -> None:
    with pytest.raises(ModuleDefError, match="not a RawModuleDefV9 document"):
        read({"tables": []})


def test_the_sync_modules_chain_columns_are_an_automatic_migration_from_the_first_release() -> None:
    """The chain columns were added at the end with defaults: existing data directories upgrade in place."""
    before = sync_module.schema_json()
    for table in before["tables"]:
        ref = table["product_type_ref"]
        dropped = {"sync_event": 2, "stream_head": 2}.get(table["name"], 0)
        if dropped:
            elements = before["typespace"]["types"][ref]["Product"]["elements"]
            before["typespace"]["types"][ref]["Product"]["elements"] = elements[:-dropped]
    before["misc_exports"] = []
    diff = compare(read(before), sync_module.module_def())
    assert not diff.breaking
    assert {c.subject for c in diff.changes} == {
        "column sync_event.epoch",
        "column sync_event.chain",
        "column stream_head.head_chain",
        "column stream_head.floor_chain",
    }
