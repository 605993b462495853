"""The client cache's promises, without sockets: reference counts, updates, callbacks after whole messages, resync."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from autopilot_sync.client.cache import ChangeCause, ChangeKind, ClientCache, RowChange, RowOp


def op(qs: int, key: int, value: str, insert: bool = True, table: str = "person") -> RowOp:
    k: Hashable = ("pk", key)
    return RowOp(qs, table, insert, k, f"{key}:{value}".encode(), (key, value))


def recorder(cache: ClientCache, table: str = "person") -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []
    cache.on_insert(table, lambda row: seen.append(("insert", row)))
    cache.on_delete(table, lambda row: seen.append(("delete", row)))
    cache.on_update(table, lambda old, new: seen.append(("update", (old, new))))
    return seen


def test_row_held_by_two_query_sets_is_deleted_only_when_both_let_go() -> None:
    cache = ClientCache()
    seen = recorder(cache)
    cache.apply([op(1, 7, "ann")], ChangeCause.SUBSCRIBE_APPLIED)
    cache.apply([op(2, 7, "ann")], ChangeCause.SUBSCRIBE_APPLIED)
    assert seen == [("insert", (7, "ann"))]
    cache.release_query_set(1, ChangeCause.UNSUBSCRIBED)
    assert cache.rows("person") == [(7, "ann")]
    cache.release_query_set(2, ChangeCause.UNSUBSCRIBED)
    assert cache.rows("person") == []
    assert seen[-1] == ("delete", (7, "ann"))


def test_delete_and_insert_of_same_key_in_one_transaction_is_one_update() -> None:
    cache = ClientCache()
    cache.apply([op(1, 7, "ann"), op(2, 7, "ann")], ChangeCause.SUBSCRIBE_APPLIED)
    seen = recorder(cache)
    changes = cache.apply(
        [op(1, 7, "ann", False), op(2, 7, "ann", False), op(1, 7, "bea"), op(2, 7, "bea")], ChangeCause.TRANSACTION
    )
    assert seen == [("update", ((7, "ann"), (7, "bea")))]
    assert [c.kind for c in changes] == [ChangeKind.UPDATE]
    assert cache.find("person", 7) == (7, "bea")


def test_callbacks_run_after_the_whole_message_is_applied() -> None:
    cache = ClientCache()
    observed: list[int] = []
    cache.on_insert("person", lambda row: observed.append(cache.count("person")))
    cache.apply([op(1, 1, "a"), op(1, 2, "b"), op(1, 3, "c")], ChangeCause.TRANSACTION)
    assert observed == [3, 3, 3]


def test_failing_callback_does_not_stop_others() -> None:
    cache = ClientCache()
    seen: list[Any] = []

    def boom(row: Any) -> None:
        raise RuntimeError("callback bug")

    cache.on_insert("person", boom)
    cache.on_insert("person", seen.append)
    cache.apply([op(1, 1, "a")], ChangeCause.TRANSACTION)
    assert seen == [(1, "a")]


def test_delete_of_unknown_row_is_ignored_and_counted() -> None:
    cache = ClientCache()
    cache.apply([op(1, 1, "a", insert=False)], ChangeCause.TRANSACTION)
    assert cache.anomalies == 1
    assert cache.rows("person") == []


def test_resync_reports_only_the_difference() -> None:
    cache = ClientCache()
    cache.apply([op(1, 1, "kept"), op(1, 2, "gone"), op(1, 3, "old")], ChangeCause.SUBSCRIBE_APPLIED)
    batches: list[list[RowChange]] = []
    cache.on_batch(lambda changes: batches.append(list(changes)))
    cache.begin_resync()
    assert sorted(cache.rows("person")) == [(1, "kept"), (2, "gone"), (3, "old")]  # old view while resyncing
    cache.apply([op(1, 1, "kept"), op(1, 3, "new"), op(1, 4, "fresh")], ChangeCause.SUBSCRIBE_APPLIED)
    assert batches == []
    changes = cache.end_resync()
    summary = sorted((c.kind.value, c.row) for c in changes)
    assert summary == [("delete", (2, "gone")), ("insert", (4, "fresh")), ("update", (3, "new"))]
    assert all(c.cause is ChangeCause.RESYNC for c in changes)
    assert sorted(cache.rows("person")) == [(1, "kept"), (3, "new"), (4, "fresh")]


def test_interrupted_resync_keeps_the_original_view() -> None:
    cache = ClientCache()
    cache.apply([op(1, 1, "a")], ChangeCause.SUBSCRIBE_APPLIED)
    cache.begin_resync()
    cache.apply([op(1, 2, "partial")], ChangeCause.SUBSCRIBE_APPLIED)
    cache.begin_resync()
    cache.apply([op(1, 1, "a")], ChangeCause.SUBSCRIBE_APPLIED)
    assert cache.end_resync() == []


def test_event_rows_are_reported_but_never_stored() -> None:
    cache = ClientCache()
    seen = recorder(cache)
    event = RowOp(1, "person", True, b"x", b"x", (0, "event"), event=True)
    cache.apply([event], ChangeCause.TRANSACTION)
    assert seen == [("insert", (0, "event"))]
    assert cache.count("person") == 0


def test_composite_primary_key_rows_are_keyed_by_every_key_column() -> None:
    # RawTableDefV9.primary_key is a list of columns; a table keyed by (id, name) updates when both match.
    import copy

    from autopilot_sync.client.schema import ClientSchema
    from autopilot_sync.client.updates import ops_from_query_rows
    from autopilot_sync.examples.chat import module as chat
    from autopilot_sync.spacetime import bsatn
    from autopilot_sync.spacetime import messages as m

    document = copy.deepcopy(chat.schema_json())
    (person,) = [t for t in document["tables"] if t["name"] == "person"]
    person["primary_key"] = [0, 1]
    schema = ClientSchema.from_json(document)
    table = schema.tables["person"]
    assert table.primary_key == (0, 1)
    codec = bsatn.codec(chat.tables["person"].row_type)
    key, row = table.decode(codec.encode((1, "ann", 3)))
    assert key == ("pk", (1, "ann")) and row.age == 3

    cache = ClientCache()
    seen = recorder(cache)
    rows = m.query_rows([("person", [codec.encode((1, "ann", 3)), codec.encode((1, "bo", 4))])])
    cache.apply(ops_from_query_rows(schema, 1, rows, True), ChangeCause.SUBSCRIBE_APPLIED)
    assert cache.count("person") == 2  # same id, different name: two rows
    assert cache.find("person", (1, "bo")).age == 4
    update = [
        RowOp(1, "person", False, ("pk", (1, "ann")), codec.encode((1, "ann", 3)), (1, "ann", 3)),
        RowOp(1, "person", True, ("pk", (1, "ann")), codec.encode((1, "ann", 5)), (1, "ann", 5)),
    ]
    changes = cache.apply(update, ChangeCause.TRANSACTION)
    assert [c.kind for c in changes] == [ChangeKind.UPDATE]
    assert seen[-1][0] == "update"
