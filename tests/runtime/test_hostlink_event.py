"""The runtime publishes a stored event as the sync module's typed append input, byte for byte what the host reads."""

from __future__ import annotations

from autopilot_sync.client.schema import ClientSchema
from autopilot_sync.module import module
from autopilot_sync.runtime.hostlink import event_argument
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
