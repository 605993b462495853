"""An update in one step (`Transaction.update_row`) has exactly the effects of deleting the old row and inserting the
new one: the same rows, the same index entries, the same net changes, the same errors, and the same state after a
rollback (docs/performance.md "Round 6 — percall2": the stream head's write-back in every append). Told the row it
replaces (`old`, round 8 "heads"), it does the same, and a row that is not the stored one changes nothing about it."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from autopilot_sync.bindings.module import Module
from autopilot_sync.bindings.reducers import ReducerError
from autopilot_sync.host.datastore import Datastore
from autopilot_sync.host.hosted_module import PythonModule
from autopilot_sync.host.transaction import TableHandle, Transaction
from autopilot_sync.spacetime import algebraic as at

heads = Module("update-row-test")
heads.table(
    "head",
    [("id", at.STRING), ("seq", at.U64), ("name", at.STRING), ("group", at.STRING)],
    primary_key="id",
    unique=[("name",)],
    indexes=[("group",), ("group", "seq")],
)

IDS = st.sampled_from(["a", "b", "c", "d"])
ROW = st.tuples(IDS, st.integers(0, 3), st.sampled_from(["n1", "n2", "n3", "n4", "n5"]), st.sampled_from(["g", "h"]))
#: "update known": `update` told the row as stored (`old`, what `find` returned); "update stale": told a row that is
#: not the stored one (a made-up version of it, or a plain tuple), which it must ignore.
OPS = st.lists(
    st.tuples(st.sampled_from(["insert", "update", "update known", "update stale", "delete"]), ROW), max_size=25
)


class TwoSteps(TableHandle):
    """The update as it was: delete the old row's bytes, then insert the new row."""

    def update(self, row: Any, old: Any = None) -> Any:
        store = self._store
        new = store.make_row(row)
        old_bytes = next(iter(store.indexes[("id",)].lookup((new[0],))), None)
        if old_bytes is None:
            raise ReducerError(f"not_found: head has no row with id = {new[0]!r}")
        self._tx.delete_bytes(store, old_bytes)
        return self._tx.insert(store, new)


def state(datastore: Datastore) -> tuple[Any, ...]:
    store = datastore["head"]
    indexes = {
        group: {key: value if type(value) is bytes else frozenset(value) for key, value in index.entries.items()}
        for group, index in store.indexes.items()
    }
    keys = {group: list(index.entries) for group, index in store.indexes.items()}  # sorted order too
    return sorted(store.rows), {b: store.rows[b] for b in store.rows}, indexes, keys


def net(tx: Transaction) -> Any:
    return {change.table: (dict(change.inserts), dict(change.deletes)) for change in tx.changes()}


def apply(table: TableHandle, op: str, row: tuple[Any, ...]) -> str:
    try:
        if op == "insert":
            table.insert(row)
        elif op == "update":
            table.update(row)
        elif op == "update known":
            table.update(row, table.find("id", row[0]))
        elif op == "update stale":
            found = table.find("id", row[0])
            table.update(row, table.row(row[0], 9, "stale", "g") if found is None or found[1] % 2 else tuple(found))
        else:
            found = table.find("id", row[0])
            if found is not None:
                table.delete(found)
    except ReducerError as exc:
        return str(exc)
    return "ok"


@settings(max_examples=300, deadline=None)
@given(before=OPS, during=OPS)
def test_an_update_in_one_step_equals_a_delete_then_an_insert(
    before: list[tuple[str, tuple[Any, ...]]], during: list[tuple[str, tuple[Any, ...]]]
) -> None:
    stores = Datastore(PythonModule(heads)), Datastore(PythonModule(heads))
    for datastore in stores:  # committed rows before the transaction under test
        setup = Transaction(datastore)
        for op, row in before:
            apply(TableHandle(setup, datastore["head"]), op, row)
    committed = state(stores[0])
    assert committed == state(stores[1])
    one, two = Transaction(stores[0]), Transaction(stores[1])
    fast, slow = TableHandle(one, stores[0]["head"]), TwoSteps(two, stores[1]["head"])
    for op, row in during:
        assert apply(fast, op, row) == apply(slow, op, row)
        assert state(stores[0]) == state(stores[1])
        assert net(one) == net(two)
    one.rollback()
    two.rollback()
    assert state(stores[0]) == committed == state(stores[1])


def test_an_update_keeping_every_key_swaps_the_index_entries_in_place() -> None:
    datastore = Datastore(PythonModule(heads))
    tx = Transaction(datastore)
    table = TableHandle(tx, datastore["head"])
    table.insert(("a", 1, "n1", "g"))
    index = datastore["head"].indexes[("id",)]
    keys = index.entries.keys()[0]
    table.update(("a", 1, "n1", "g"))  # the same row: nothing changes
    table.update(("a", 2, "n1", "g"))
    assert index.entries.keys()[0] is keys  # the sorted key was not removed and added again
    assert [tuple(row) for row in table] == [("a", 2, "n1", "g")]
    assert net(tx) == {"head": ({datastore["head"].encode(("a", 2, "n1", "g")): ("a", 2, "n1", "g")}, {})}
