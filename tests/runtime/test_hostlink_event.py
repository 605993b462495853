"""The runtime publishes a stored event as the sync module's typed append input, byte for byte what the host reads;
its head check after a reconnect asks in bounded queries."""

from __future__ import annotations

import re

from autopilot_sync.client.schema import ClientSchema
from autopilot_sync.module import module
from autopilot_sync.runtime.hostlink import HEADS_PER_QUERY, event_argument, head_queries
from autopilot_sync.runtime.outbox import StoredEvent
from autopilot_sync.spacetime.values import Timestamp
from autopilot_sync.sync_bindings import AppendSyncEventsBatchItem


def test_a_stored_event_goes_out_as_the_typed_append_input_with_unchanged_bytes() -> None:
    digest = "sha256:" + "ab" * 32
    stored = StoredEvent("run.7", 3, "run.7:3", "run.delta", '{"n":3}', digest, 1_700_000_000_000_123)
    item = event_argument(stored)
    assert isinstance(item, AppendSyncEventsBatchItem)
    assert (item.stream_id, item.idempotency_key, item.expected_seq) == ("run.7", "run.7:3", 3)
    assert item.published_at == Timestamp(stored.appended_at_us)
    append = ClientSchema.from_json(module.schema_json()).reducers["append_sync_events"]
    positional = ("run.7", "run.7:3", "run.delta", '{"n":3}', digest, 3, Timestamp(1_700_000_000_000_123))
    assert append.encode_args([[item]]) == append.encode_args([[positional]])


def test_the_reconnect_head_check_asks_for_the_runtimes_streams_in_bounded_queries() -> None:
    streams = [f"runtime.run.r{i}.events" for i in range(130)]
    queries = head_queries(streams + streams[:5])  # a repeat is asked once
    assert len(queries) == 3
    named = [re.findall(r"stream_id = '([^']+)'", query) for query in queries]
    assert [len(names) for names in named] == [HEADS_PER_QUERY, HEADS_PER_QUERY, 130 - 2 * HEADS_PER_QUERY]
    assert sorted(name for names in named for name in names) == sorted(streams)
    assert head_queries([]) == []
