"""The sync module's reducers and lifecycle hooks (the contract in docs/protocol.md)."""

from __future__ import annotations

from typing import Any

from autopilot_sync import stream_chain
from autopilot_sync.host.module_api import StartInfo
from autopilot_sync.host.transaction import ReducerContext
from autopilot_sync.module.auth import Scope, nostr_pubkey_of, require_scope, require_stream, scopes_of
from autopilot_sync.module.canonical import CanonicalJsonError, canonicalize_text, payload_hash
from autopilot_sync.module.config import current_limits, seed_config
from autopilot_sync.module.errors import SyncError, SyncErrorCode
from autopilot_sync.module.limits import check_event_fields, check_payload_depth, check_stream_id
from autopilot_sync.module.schema import SYNC_EVENT_INPUT, module
from autopilot_sync.module.visibility import PRESENCE_REALM, admit_member
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime.values import Timestamp

FIRST_EPOCH = 1


@module.client_connected
def client_connected(ctx: ReducerContext) -> None:
    """Admit readers and publishers only; record presence with the Nostr key the token proves."""
    scopes = scopes_of(ctx.claims)
    if Scope.SUBSCRIBE.value not in scopes and Scope.APPEND.value not in scopes:
        raise SyncError(SyncErrorCode.UNAUTHORIZED, "connecting needs scope sync.subscribe or sync.append")
    admit_member(ctx)
    if ctx.connection_id is None:
        return
    pubkey = nostr_pubkey_of(ctx.claims)
    kind = ctx.claims.get("client_kind")
    ctx.db.active_connection.insert(
        (
            ctx.connection_id,
            ctx.sender,
            pubkey.hex if pubkey else "",
            pubkey.npub if pubkey else "",
            kind if isinstance(kind, str) else "",
            ctx.timestamp,
            ctx.timestamp,
            PRESENCE_REALM,
        )
    )


@module.client_disconnected
def client_disconnected(ctx: ReducerContext) -> None:
    """Presence ends with the connection (also for connections a crash left behind, at host start)."""
    if ctx.connection_id is not None:
        ctx.db.active_connection.delete_by("connection_id", ctx.connection_id)


@module.reducer()
def heartbeat(ctx: ReducerContext) -> None:
    """Refresh `last_seen` of the caller's connection."""
    if ctx.connection_id is None:
        return
    row = ctx.db.active_connection.find("connection_id", ctx.connection_id)
    if row is not None:
        ctx.db.active_connection.update((*row[:6], ctx.timestamp, *row[7:]))


@module.reducer(("batch", at.array(SYNC_EVENT_INPUT)))
def append_sync_events(ctx: ReducerContext, batch: list[tuple[Any, ...]]) -> None:
    """Append events atomically: hash-checked, idempotent by key, gap-free per stream."""
    require_scope(ctx.claims, Scope.APPEND, "append_sync_events")
    limits = current_limits(ctx)
    if len(batch) > limits.max_batch_events:
        raise SyncError(
            SyncErrorCode.BATCH_TOO_LARGE, f"{len(batch)} events in one call, limit {limits.max_batch_events}"
        )
    heads = _Heads(ctx)
    for event in batch:
        _append_one(ctx, heads, *event)
    heads.write()


@module.reducer(*SYNC_EVENT_INPUT.elements and [(e.name or "", e.type) for e in SYNC_EVENT_INPUT.elements])
def append_sync_event(
    ctx: ReducerContext,
    stream_id: str,
    idempotency_key: str,
    kind: str,
    payload: str,
    hash_text: str,
    expected_seq: int,
    published_at: Timestamp,
) -> None:
    """The single-event form of `append_sync_events`."""
    require_scope(ctx.claims, Scope.APPEND, "append_sync_event")
    heads = _Heads(ctx)
    _append_one(ctx, heads, stream_id, idempotency_key, kind, payload, hash_text, expected_seq, published_at)
    heads.write()


class _Heads:
    """Stream heads a call reads and moves, written back once per stream at the end of the call.

    A batch of 100 events on one stream would otherwise rewrite its `stream_head` row 100 times (find, delete,
    insert, index upkeep): measured as the largest single cost of `append_sync_events`. Still one transaction, so
    atomicity and the sequence rule are unchanged. Each head carries its chain value, so every appended event links
    to the one before it (the first event of a new stream to the genesis value of epoch 1).
    """

    def __init__(self, ctx: ReducerContext) -> None:
        self._ctx = ctx
        self._rows: dict[str, tuple[Any, ...] | None] = {}
        self._moved: dict[str, tuple[int, str]] = {}

    def _row(self, stream_id: str) -> tuple[Any, ...] | None:
        if stream_id not in self._rows:
            self._rows[stream_id] = self._ctx.db.stream_head.find("stream_id", stream_id)
        return self._rows[stream_id]

    def head_seq(self, stream_id: str) -> int:
        """The stream's head as this call has moved it so far (0 for a new stream)."""
        if stream_id in self._moved:
            return self._moved[stream_id][0]
        row = self._row(stream_id)
        return int(row[1]) if row is not None else 0

    def epoch(self, stream_id: str) -> int:
        """The stream's epoch (the first epoch for a new stream)."""
        row = self._row(stream_id)
        return int(row[3]) if row is not None else FIRST_EPOCH

    def head_chain(self, stream_id: str) -> str:
        """The chain value of the stream's head as this call has moved it (genesis for a new stream)."""
        if stream_id in self._moved:
            return self._moved[stream_id][1]
        row = self._row(stream_id)
        return str(row[5]) if row is not None else stream_chain.genesis(stream_id, FIRST_EPOCH)

    def advance(self, stream_id: str, seq: int, chain: str) -> None:
        """Record that `seq`, with chain value `chain`, is now the stream's head."""
        self._moved[stream_id] = (seq, chain)

    def write(self) -> None:
        """Write every moved head once."""
        now = self._ctx.timestamp
        for stream_id, (seq, chain) in self._moved.items():
            row = self._rows.get(stream_id)
            if row is None:
                floor_chain = stream_chain.genesis(stream_id, FIRST_EPOCH)
                self._ctx.db.stream_head.insert((stream_id, seq, 1, FIRST_EPOCH, now, chain, floor_chain))
            else:
                self._ctx.db.stream_head.update((stream_id, seq, row[2], row[3], now, chain, row[6]))


def _append_one(
    ctx: ReducerContext,
    heads: _Heads,
    stream_id: str,
    idempotency_key: str,
    kind: str,
    payload: str,
    hash_text: str,
    expected_seq: int,
    published_at: Timestamp,
) -> None:
    limits = current_limits(ctx)  # one primary-key lookup of the sync_config row (module/config.py)
    check_event_fields(limits, stream_id, idempotency_key, kind)
    require_stream(ctx.claims, stream_id)
    try:
        canonical = canonicalize_text(payload)
    except CanonicalJsonError as exc:
        raise SyncError(SyncErrorCode.INVALID_EVENT, str(exc)) from None
    size = len(canonical.encode("utf-8"))
    if size > limits.max_payload_bytes:
        raise SyncError(SyncErrorCode.PAYLOAD_TOO_LARGE, f"payload is {size} bytes, limit {limits.max_payload_bytes}")
    check_payload_depth(canonical, limits.max_payload_depth)
    computed = payload_hash(canonical)
    if computed != hash_text:
        raise SyncError(
            SyncErrorCode.PAYLOAD_HASH_MISMATCH,
            f"payload_hash {hash_text} but the canonical payload hashes to {computed}",
        )
    existing = ctx.db.sync_event.find(("stream_id", "idempotency_key"), (stream_id, idempotency_key))
    if existing is not None:  # keys are scoped per stream: a conflict only ever describes the caller's own stream
        if existing[5] == computed:
            return  # a retry of a committed event: the duplicate is the success
        raise SyncError(
            SyncErrorCode.IDEMPOTENCY_CONFLICT,
            f"key {idempotency_key} was committed on this stream as seq {existing[1]} with {existing[5]}",
        )
    head_seq = heads.head_seq(stream_id)
    if expected_seq != head_seq + 1:
        raise SyncError(
            SyncErrorCode.SEQUENCE_CONFLICT,
            f"stream {stream_id} expected_seq={expected_seq} head_seq={head_seq}",
        )
    epoch = heads.epoch(stream_id)
    chain = stream_chain.link(
        heads.head_chain(stream_id), stream_id, epoch, expected_seq, kind, idempotency_key, computed
    )
    ctx.db.sync_event.insert(
        (stream_id, expected_seq, idempotency_key, kind, canonical, computed, published_at, ctx.timestamp, epoch, chain)
    )
    heads.advance(stream_id, expected_seq, chain)


@module.reducer(("stream_id", at.STRING), ("seq", at.U64))
def ack_checkpoint(ctx: ReducerContext, stream_id: str, seq: int) -> None:
    """Record the last seq the caller applied on a stream (observability of replay lag)."""
    require_scope(ctx.claims, Scope.CHECKPOINT_WRITE, "ack_checkpoint")
    check_stream_id(current_limits(ctx), stream_id)
    require_stream(ctx.claims, stream_id)
    head = ctx.db.stream_head.find("stream_id", stream_id)
    if head is None:  # a checkpoint row per made-up stream would be kept forever and fanned out to everyone
        raise SyncError(SyncErrorCode.UNKNOWN_STREAM, f"stream {stream_id} does not exist")
    head_seq = head[1]
    if seq > head_seq:
        raise SyncError(SyncErrorCode.CHECKPOINT_BEYOND_HEAD, f"stream {stream_id} seq={seq} head_seq={head_seq}")
    key = f"{ctx.sender.hex}:{stream_id}"
    current = ctx.db.stream_checkpoint.find("checkpoint_key", key)
    if current is None:
        ctx.db.stream_checkpoint.insert((key, ctx.sender, stream_id, seq, ctx.timestamp))
        return
    if seq < current[3]:
        raise SyncError(
            SyncErrorCode.CHECKPOINT_REGRESSION, f"stream {stream_id} seq={seq} is below the recorded {current[3]}"
        )
    if seq > current[3]:
        ctx.db.stream_checkpoint.update((key, ctx.sender, stream_id, seq, ctx.timestamp))


@module.reducer(("stream_id", at.STRING), ("retain_from_seq", at.U64))
def trim_stream(ctx: ReducerContext, stream_id: str, retain_from_seq: int) -> None:
    """Retention: delete events below `retain_from_seq` and raise the stream's floor so stale cursors are detectable."""
    require_scope(ctx.claims, Scope.ADMIN, "trim_stream")
    check_stream_id(current_limits(ctx), stream_id)
    require_stream(ctx.claims, stream_id)
    head = ctx.db.stream_head.find("stream_id", stream_id)
    if head is None:
        raise SyncError(SyncErrorCode.UNKNOWN_STREAM, f"stream {stream_id} has no events")
    _, head_seq, floor, epoch, _, head_chain, floor_chain = head
    if retain_from_seq > head_seq + 1 or retain_from_seq < floor:
        raise SyncError(
            SyncErrorCode.INVALID_TRIM,
            f"stream {stream_id} retain_from_seq={retain_from_seq} must be within {floor}..{head_seq + 1}",
        )
    for row in ctx.db.sync_event.range(("stream_id", "seq"), (stream_id, floor), (stream_id, retain_from_seq - 1)):
        ctx.db.sync_event.delete(row)
        floor_chain = row[9]  # ascending: ends as the chain value just below the new floor
    ctx.db.stream_head.update((stream_id, head_seq, retain_from_seq, epoch, ctx.timestamp, head_chain, floor_chain))


@module.reducer(("stream_id", at.STRING))
def reset_stream(ctx: ReducerContext, stream_id: str) -> None:
    """Start a stream over: delete its events, reset the head and bump its epoch (clients must rebuild)."""
    require_scope(ctx.claims, Scope.ADMIN, "reset_stream")
    check_stream_id(current_limits(ctx), stream_id)
    require_stream(ctx.claims, stream_id)
    head = ctx.db.stream_head.find("stream_id", stream_id)
    if head is None:
        raise SyncError(SyncErrorCode.UNKNOWN_STREAM, f"stream {stream_id} has no events")
    for row in ctx.db.sync_event.filter("stream_id", stream_id):
        ctx.db.sync_event.delete(row)
    epoch = head[3] + 1
    start = stream_chain.genesis(stream_id, epoch)
    ctx.db.stream_head.update((stream_id, 0, 1, epoch, ctx.timestamp, start, start))


@module.on_start
def on_start(ctx: ReducerContext, info: StartInfo) -> None:
    """At every host start: seed the limits, chain unchained streams, then bump epochs if history was lost.

    Limits: `seed_config` inserts the default `sync_config` row into a data directory written before it existed
    (and records the owner); an existing row keeps its limits.

    Upgrade: `stream_head.head_chain` is empty only on data written before chains existed (the column's default).
    Such a stream gets `floor_chain = genesis(stream, epoch)` (what was trimmed before cannot be recovered, so the
    chain starts at the retained floor) and every retained event its epoch and chain value, in seq order.

    Discarded history: when recovery set aside a commit-log tail, commits the host may have acknowledged (and
    desktops applied) are gone, and the next commit reuses their seqs. Every stream gets a new epoch, so every
    desktop sees an epoch change and rebuilds instead of silently keeping events the host no longer has. The chain
    continues (the retained events keep their values; the next event links to the head under the new epoch).
    """
    seed_config(ctx)
    for head in list(ctx.db.stream_head):
        if head[5] == "":
            _chain_existing(ctx, head)
    if info.history_discarded:
        for head in list(ctx.db.stream_head):
            ctx.db.stream_head.update((*head[:3], head[3] + 1, ctx.timestamp, *head[5:]))


def _chain_existing(ctx: ReducerContext, head: tuple[Any, ...]) -> None:
    stream_id, head_seq, floor, epoch = str(head[0]), int(head[1]), int(head[2]), int(head[3])
    floor_chain = stream_chain.genesis(stream_id, epoch)
    chain = floor_chain
    for row in list(ctx.db.sync_event.range(("stream_id", "seq"), (stream_id, floor), (stream_id, head_seq))):
        chain = stream_chain.link(chain, stream_id, epoch, row[1], row[3], row[2], row[5])
        ctx.db.sync_event.delete(row)
        ctx.db.sync_event.insert((*row[:8], epoch, chain))
    ctx.db.stream_head.update((*head[:5], chain, floor_chain))
