"""Every rule and error code of the sync module, run through the real engine with verified-claims callers."""

from __future__ import annotations

import json
from pathlib import Path

from sync_module_helpers import ADMIN, PUBLISHER, PUBLISHER_KEY, READER, READER_KEY, caller, event

from autopilot_sync.contract.canonical import canonicalize_text, payload_hash
from autopilot_sync.contract.codes import SyncErrorCode, parse_error_code
from autopilot_sync.host.call_outcome import CallStatus
from autopilot_sync.host.engine import HostEngine
from autopilot_sync.nostr.keys import PublicKey
from autopilot_sync.spacetime.values import Timestamp
from autopilot_sync.sync_bindings import AppendSyncEventsBatchItem, SyncEvent

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "payload_hash.json").read_text())["vectors"]


def events_of(engine: HostEngine, stream: str) -> list[int]:
    rows = [SyncEvent.from_values(row) for row in engine.datastore["sync_event"].rows.values()]
    return sorted(row.seq for row in rows if row.stream_id == stream)


async def code_of(engine: HostEngine, reducer: str, *args: object, who: object = PUBLISHER) -> SyncErrorCode | None:
    outcome = await engine.call_reducer(reducer, args, who)  # type: ignore[arg-type]
    if outcome.status is CallStatus.COMMITTED:
        return None
    assert outcome.status is CallStatus.USER_ERROR, outcome.message
    return parse_error_code(outcome.message)


def test_hash_vectors_match_the_canonical_form() -> None:
    for vector in VECTORS:
        assert canonicalize_text(json.dumps(vector["value"], indent=3)) == vector["canonical"]
        assert payload_hash(vector["canonical"]) == vector["payload_hash"]


async def test_append_assigns_gap_free_seqs_and_moves_the_head(engine: HostEngine) -> None:
    batch = [event("s", 1, {"n": 1}), event("s", 2, {"n": 2}), event("s", 3, {"n": 3})]
    assert await code_of(engine, "append_sync_events", batch) is None
    assert events_of(engine, "s") == [1, 2, 3]
    head = engine.datastore["stream_head"].rows
    (row,) = head.values()
    assert (row.stream_id, row.head_seq, row.retained_from_seq, row.epoch) == ("s", 3, 1, 1)  # type: ignore[attr-defined]
    assert await code_of(engine, "append_sync_event", *event("s", 4, {"n": 4})) is None
    assert events_of(engine, "s") == [1, 2, 3, 4]


async def test_duplicate_is_success_and_inserts_nothing(engine: HostEngine) -> None:
    assert await code_of(engine, "append_sync_events", [event("s", 1, {"n": 1})]) is None
    before = engine.offset
    assert await code_of(engine, "append_sync_events", [event("s", 1, {"n": 1})]) is None
    assert engine.offset == before and events_of(engine, "s") == [1]


async def test_same_key_other_hash_is_an_idempotency_conflict(engine: HostEngine) -> None:
    assert await code_of(engine, "append_sync_events", [event("s", 1, {"n": 1})]) is None
    conflict = await code_of(engine, "append_sync_events", [event("s", 2, {"n": 2}, key="s:1")])
    assert conflict is SyncErrorCode.IDEMPOTENCY_CONFLICT


async def test_retries_and_conflicts_after_many_new_keys_are_answered_as_the_first_ones(engine: HostEngine) -> None:
    # Many new keys in a row: the twin's runner then sends the idempotency lookups one way as empty. A retry in a
    # batch (success, nothing inserted), a retry after a new event and a reused key must still read as on the first.
    assert await code_of(engine, "append_sync_events", [event("s", seq, {"n": seq}) for seq in range(1, 21)]) is None
    before = engine.offset
    assert await code_of(engine, "append_sync_events", [event("s", seq, {"n": seq}) for seq in range(15, 21)]) is None
    assert engine.offset == before
    batch = [event("s", 21, {"n": 21}), event("s", 20, {"n": 20}), event("s", 22, {"n": 22})]
    assert await code_of(engine, "append_sync_events", batch) is None
    assert events_of(engine, "s") == list(range(1, 23))
    reused = [event("s", 23, {"n": 23}), event("s", 24, {"n": 24}, key="s:3")]
    assert await code_of(engine, "append_sync_events", reused) is SyncErrorCode.IDEMPOTENCY_CONFLICT
    assert events_of(engine, "s") == list(range(1, 23))


async def test_sequence_conflict_carries_both_numbers(engine: HostEngine) -> None:
    outcome = await engine.call_reducer("append_sync_events", ([event("s", 5, {})],), PUBLISHER)
    assert outcome.status is CallStatus.USER_ERROR
    assert parse_error_code(outcome.message) is SyncErrorCode.SEQUENCE_CONFLICT
    assert "expected_seq=5" in outcome.message and "head_seq=0" in outcome.message


async def test_batch_is_atomic(engine: HostEngine) -> None:
    batch = [event("s", 1, {}), event("s", 2, {}), event("s", 4, {})]
    assert await code_of(engine, "append_sync_events", batch) is SyncErrorCode.SEQUENCE_CONFLICT
    assert events_of(engine, "s") == []
    assert len(engine.datastore["stream_head"]) == 0


async def test_bad_hash_bad_json_empty_fields_and_limits(engine: HostEngine) -> None:
    good = event("s", 1, {"a": 1})
    wrong_hash = good._replace(payload_hash="sha256:" + "0" * 64)
    assert await code_of(engine, "append_sync_events", [wrong_hash]) is SyncErrorCode.PAYLOAD_HASH_MISMATCH
    not_json = good._replace(payload="{nope")
    assert await code_of(engine, "append_sync_events", [not_json]) is SyncErrorCode.INVALID_EVENT
    no_stream = good._replace(stream_id="")
    assert await code_of(engine, "append_sync_events", [no_stream]) is SyncErrorCode.INVALID_EVENT
    huge = event("s", 1, {"blob": "x" * 300_000})
    assert await code_of(engine, "append_sync_events", [huge]) is SyncErrorCode.PAYLOAD_TOO_LARGE
    many = [event("s", i, {}) for i in range(1, 1002)]
    assert await code_of(engine, "append_sync_events", many) is SyncErrorCode.BATCH_TOO_LARGE


async def test_non_canonical_payload_is_stored_canonically(engine: HostEngine) -> None:
    text = '{ "b": 2,  "a": 1 }'
    canonical = canonicalize_text(text)
    row = AppendSyncEventsBatchItem("s", "s:1", "k", text, payload_hash(canonical), 1, Timestamp(0))
    assert await code_of(engine, "append_sync_events", [row]) is None
    (stored,) = engine.datastore["sync_event"].rows.values()
    assert SyncEvent.from_values(stored).payload == '{"a":1,"b":2}'


async def test_scopes_are_required_for_every_reducer(engine: HostEngine) -> None:
    reader_append = await code_of(engine, "append_sync_events", [event("s", 1, {})], who=READER)
    assert reader_append is SyncErrorCode.UNAUTHORIZED
    assert await code_of(engine, "append_sync_event", *event("s", 1, {}), who=READER) is SyncErrorCode.UNAUTHORIZED
    assert await code_of(engine, "append_sync_events", [event("s", 1, {})]) is None
    assert await code_of(engine, "ack_checkpoint", "s", 1, who=PUBLISHER) is SyncErrorCode.UNAUTHORIZED
    assert await code_of(engine, "trim_stream", "s", 1, who=READER) is SyncErrorCode.UNAUTHORIZED
    assert await code_of(engine, "reset_stream", "s", who=PUBLISHER) is SyncErrorCode.UNAUTHORIZED
    anonymous = caller([], sub="some-uuid")
    assert await code_of(engine, "append_sync_events", [event("t", 1, {})], who=anonymous) is SyncErrorCode.UNAUTHORIZED


async def test_streams_claim_limits_publishing(engine: HostEngine) -> None:
    narrow = caller(["sync.append"], streams=["runtime.run.*"])
    assert await code_of(engine, "append_sync_events", [event("other", 1, {})], who=narrow) is (
        SyncErrorCode.FORBIDDEN_STREAM
    )
    assert await code_of(engine, "append_sync_events", [event("runtime.run.1.events", 1, {})], who=narrow) is None


async def test_checkpoints_never_move_backwards_nor_past_head(engine: HostEngine) -> None:
    await engine.call_reducer("append_sync_events", ([event("s", i, {}) for i in (1, 2, 3)],), PUBLISHER)
    assert await code_of(engine, "ack_checkpoint", "s", 2, who=READER) is None
    assert await code_of(engine, "ack_checkpoint", "s", 1, who=READER) is SyncErrorCode.CHECKPOINT_REGRESSION
    assert await code_of(engine, "ack_checkpoint", "s", 4, who=READER) is SyncErrorCode.CHECKPOINT_BEYOND_HEAD
    assert await code_of(engine, "ack_checkpoint", "s", 3, who=READER) is None
    (row,) = engine.datastore["stream_checkpoint"].rows.values()
    assert row.seq == 3  # type: ignore[attr-defined]


async def test_trim_raises_the_floor_and_deletes_old_events(engine: HostEngine) -> None:
    await engine.call_reducer("append_sync_events", ([event("s", i, {}) for i in range(1, 6)],), PUBLISHER)
    assert await code_of(engine, "trim_stream", "s", 4, who=ADMIN) is None
    assert events_of(engine, "s") == [4, 5]
    (head,) = engine.datastore["stream_head"].rows.values()
    assert head.retained_from_seq == 4 and head.head_seq == 5  # type: ignore[attr-defined]
    assert await code_of(engine, "trim_stream", "s", 3, who=ADMIN) is SyncErrorCode.INVALID_TRIM
    assert await code_of(engine, "trim_stream", "s", 7, who=ADMIN) is SyncErrorCode.INVALID_TRIM
    assert await code_of(engine, "trim_stream", "nope", 1, who=ADMIN) is SyncErrorCode.UNKNOWN_STREAM
    assert await code_of(engine, "append_sync_events", [event("s", 6, {})]) is None


async def test_reset_bumps_the_epoch(engine: HostEngine) -> None:
    await engine.call_reducer("append_sync_events", ([event("s", 1, {})],), PUBLISHER)
    assert await code_of(engine, "reset_stream", "s", who=ADMIN) is None
    (head,) = engine.datastore["stream_head"].rows.values()
    assert (head.head_seq, head.epoch) == (0, 2)  # type: ignore[attr-defined]
    assert events_of(engine, "s") == []
    assert await code_of(engine, "reset_stream", "nope", who=ADMIN) is SyncErrorCode.UNKNOWN_STREAM


async def test_presence_comes_only_from_verified_claims(engine: HostEngine) -> None:
    await engine.connect(READER)
    await engine.connect(PUBLISHER)
    rows = sorted(engine.datastore["active_connection"].rows.values())
    assert sorted(r.nostr_pubkey_hex for r in rows) == sorted([PUBLISHER_KEY, READER_KEY])  # type: ignore[attr-defined]
    assert {r.npub for r in rows} == {PublicKey.from_hex(k).npub for k in (PUBLISHER_KEY, READER_KEY)}  # type: ignore[attr-defined]
    assert all(r.npub.startswith("npub1") for r in rows)  # type: ignore[attr-defined]
    await engine.call_reducer("heartbeat", (), READER)
    await engine.disconnect(READER)
    await engine.disconnect(PUBLISHER)
    assert len(engine.datastore["active_connection"]) == 0


async def test_connect_without_a_sync_scope_is_rejected(engine: HostEngine) -> None:
    from autopilot_sync.host.engine import ConnectionRejectedError

    for claims_scopes in ([], ["sync.checkpoint.write"], ["sync.admin"]):
        try:
            await engine.connect(caller(claims_scopes, conn=77))
        except ConnectionRejectedError as exc:
            assert parse_error_code(str(exc)) is SyncErrorCode.UNAUTHORIZED
        else:
            raise AssertionError(f"connect with {claims_scopes} was admitted")
    assert len(engine.datastore["active_connection"]) == 0


def test_protocol_doc_lists_exactly_the_error_codes() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
    table = doc.split("## The sync module's contract", 1)[1].split("| code | meaning |", 1)[1].split("\n\n", 1)[0]
    codes_in_table = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}
    assert codes_in_table == {code.value for code in SyncErrorCode}
