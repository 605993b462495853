"""The sync module's tables: the only source of truth for presence, streams, events and checkpoints."""

from __future__ import annotations

from autopilot_sync.bindings.module import Module
from autopilot_sync.spacetime import algebraic as at

MODULE_VERSION = "1"

module = Module("autopilot-sync", version=MODULE_VERSION)

active_connection = module.table(
    "active_connection",
    [
        ("connection_id", at.CONNECTION_ID),
        ("identity", at.IDENTITY),
        ("nostr_pubkey_hex", at.STRING),
        ("npub", at.STRING),
        ("client_kind", at.STRING),
        ("connected_at", at.TIMESTAMP),
        ("last_seen", at.TIMESTAMP),
        # the presence group a row shows to (module/visibility.py); one group today, PRESENCE_REALM
        ("realm", at.STRING),
    ],
    primary_key="connection_id",
    indexes=[("identity",), ("realm",)],
    defaults={"realm": "sync"},  # added after the first release: at the end, with a default (module/visibility.py)
)

stream_head = module.table(
    "stream_head",
    [
        ("stream_id", at.STRING),
        ("head_seq", at.U64),
        ("retained_from_seq", at.U64),
        ("epoch", at.U64),
        ("updated_at", at.TIMESTAMP),
        ("head_chain", at.STRING),
        ("floor_chain", at.STRING),
    ],
    primary_key="stream_id",
    # Added after the first release, at the end with defaults: existing data directories upgrade in place and the
    # start hook (`reducers.on_start`) computes the chains (docs/protocol.md "Stream hash chain").
    defaults={"head_chain": "", "floor_chain": ""},
)

sync_event = module.table(
    "sync_event",
    [
        ("stream_id", at.STRING),
        ("seq", at.U64),
        ("idempotency_key", at.STRING),
        ("kind", at.STRING),
        ("payload", at.STRING),
        ("payload_hash", at.STRING),
        ("published_at", at.TIMESTAMP),
        ("committed_at", at.TIMESTAMP),
        ("epoch", at.U64),
        ("chain", at.STRING),
    ],
    unique=[("stream_id", "seq")],
    # Idempotency keys are scoped per stream. The append reducer keeps them unique per stream (it looks the key up
    # before inserting, and reducers run one at a time); an index, not a unique constraint, because SpacetimeDB's
    # automatic migration forbids adding a unique constraint to a table that has rows, and data written before
    # keys were scoped had a unique constraint on the key alone (removing that one is allowed).
    # (stream_id) alone is the join column of its visibility filter (module/visibility.py).
    indexes=[("stream_id", "idempotency_key"), ("stream_id",)],
    defaults={"epoch": 0, "chain": ""},
)

stream_checkpoint = module.table(
    "stream_checkpoint",
    [
        ("checkpoint_key", at.STRING),
        ("identity", at.IDENTITY),
        ("stream_id", at.STRING),
        ("seq", at.U64),
        ("updated_at", at.TIMESTAMP),
    ],
    primary_key="checkpoint_key",
    indexes=[("identity",), ("stream_id",)],
)

#: One event as producers send it to `append_sync_events` (in Python: `sync_bindings.AppendSyncEventsBatchItem`).
SYNC_EVENT_INPUT = at.product(
    ("stream_id", at.STRING),
    ("idempotency_key", at.STRING),
    ("kind", at.STRING),
    ("payload", at.STRING),
    ("payload_hash", at.STRING),
    ("expected_seq", at.U64),
    ("published_at", at.TIMESTAMP),
)
