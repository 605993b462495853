"""The sync module's tables: the only source of truth for presence, streams, events and checkpoints."""

from __future__ import annotations

from autopilot_sync.host.module_api import Module
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
)

stream_head = module.table(
    "stream_head",
    [
        ("stream_id", at.STRING),
        ("head_seq", at.U64),
        ("retained_from_seq", at.U64),
        ("epoch", at.U64),
        ("updated_at", at.TIMESTAMP),
    ],
    primary_key="stream_id",
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
    ],
    unique=[("stream_id", "seq"), ("idempotency_key",)],
    indexes=[("stream_id",)],  # the join column of its visibility filter (module/visibility.py)
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

#: One event as producers send it to `append_sync_events`.
SYNC_EVENT_INPUT = at.product(
    ("stream_id", at.STRING),
    ("idempotency_key", at.STRING),
    ("kind", at.STRING),
    ("payload", at.STRING),
    ("payload_hash", at.STRING),
    ("expected_seq", at.U64),
    ("published_at", at.TIMESTAMP),
)
