"""A row list decodes in one loop to exactly what decoding row by row gives, and a bad row still spoils the batch."""

from __future__ import annotations

import pytest

from autopilot_sync.client import ClientSchema
from autopilot_sync.client.cache import ChangeCause, ClientCache
from autopilot_sync.client.errors import ProtocolError, ProtocolErrorKind
from autopilot_sync.client.updates import ops_from_query_rows
from autopilot_sync.examples.chat import module as chat
from autopilot_sync.module import module as sync
from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime import messages as m
from autopilot_sync.spacetime.errors import DecodeError
from autopilot_sync.spacetime.values import Timestamp

CHAT = ClientSchema.from_json(chat.schema_json())
SYNC = ClientSchema.from_json(sync.schema_json())


def _people(count: int) -> list[bytes]:
    return [bsatn.encode(chat.tables["person"].row_type, (pid, f"p{pid}", pid % 90)) for pid in range(count)]


def _events(count: int) -> list[bytes]:
    row_type = sync.tables["sync_event"].row_type
    return [
        bsatn.encode(row_type, ("s", seq, f"s:{seq}", "k", "{}", "h", Timestamp(seq), Timestamp(seq), 0, "c"))
        for seq in range(1, count + 1)
    ]


@pytest.mark.parametrize(
    ("schema", "table", "rows"), [(CHAT, "person", _people(50)), (SYNC, "sync_event", _events(50))]
)
def test_a_row_list_decodes_to_the_same_keys_and_rows_as_one_row_at_a_time(
    schema: ClientSchema, table: str, rows: list[bytes]
) -> None:
    codec = schema.table(table)
    assert codec.decode_rows(rows) == [codec.decode(raw) for raw in rows]


def test_one_bad_row_in_a_catch_up_is_a_bad_row_error_and_the_cache_stays_empty() -> None:
    rows = _events(20)
    rows[13] = rows[13][:-3]
    with pytest.raises(DecodeError):
        SYNC.table("sync_event").decode_rows(rows)
    single = m.SingleTableRows("sync_event", m.BsatnRowList.from_rows(rows))
    cache = ClientCache()
    with pytest.raises(ProtocolError) as caught:
        cache.apply(ops_from_query_rows(SYNC, 1, m.QueryRows((single,)), insert=True), ChangeCause.SUBSCRIBE_APPLIED)
    assert caught.value.kind is ProtocolErrorKind.BAD_ROW
    assert cache.count("sync_event") == 0


def test_a_catch_up_lands_every_row_once_with_one_insert_change_each() -> None:
    rows = _events(100)
    single = m.SingleTableRows("sync_event", m.BsatnRowList.from_rows(rows))
    cache = ClientCache()
    changes = cache.apply(
        ops_from_query_rows(SYNC, 1, m.QueryRows((single,)), insert=True), ChangeCause.SUBSCRIBE_APPLIED
    )
    assert len(changes) == 100 and cache.count("sync_event") == 100 and cache.query_set_size(1) == 100
    assert [change.new.seq for change in changes] == list(range(1, 101))
    assert cache.release_query_set(1, ChangeCause.UNSUBSCRIBED) and cache.count("sync_event") == 0
