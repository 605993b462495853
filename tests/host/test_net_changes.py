"""`net_changes` (what `Transaction.changes` hands to the commit) gives exactly the tables, rows and order of the
union-of-names formulation it replaced, whatever the two maps hold (empty tables, tables on one side or both)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from autopilot_sync.host.transaction import TableChange, net_changes

_tables = st.sampled_from(["a", "b", "c", "d"])
_rows = st.dictionaries(st.binary(max_size=4), st.tuples(st.integers(0, 9)), max_size=3)
_side = st.dictionaries(_tables, _rows, max_size=4)


def _by_union_of_names(inserted: dict[str, dict[bytes, Any]], deleted: dict[str, dict[bytes, Any]]) -> Any:
    names = list(dict.fromkeys([*inserted, *deleted]))
    out = []
    for name in names:
        inserts = tuple(inserted.get(name, {}).items())
        deletes = tuple(deleted.get(name, {}).items())
        if inserts or deletes:
            out.append(TableChange(name, inserts, deletes))
    return tuple(out)


@given(_side, _side)
def test_net_changes_are_the_union_of_names_formulation(
    inserted: dict[str, dict[bytes, Any]], deleted: dict[str, dict[bytes, Any]]
) -> None:
    assert net_changes(inserted, deleted) == _by_union_of_names(inserted, deleted)


def test_a_table_only_deleted_from_comes_after_the_tables_inserted_into() -> None:
    inserted = {"b": {b"1": (1,)}, "a": {}}
    deleted = {"c": {b"2": (2,)}, "a": {b"3": (3,)}, "d": {}}
    assert net_changes(inserted, deleted) == (
        TableChange("b", ((b"1", (1,)),), ()),
        TableChange("a", (), ((b"3", (3,)),)),
        TableChange("c", (), ((b"2", (2,)),)),
    )
