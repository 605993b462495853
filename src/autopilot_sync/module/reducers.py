"""The sync module's reducers and lifecycle hooks (the contract in docs/protocol.md).

Rows and the event input are read and written by name through the module's own generated bindings
(`autopilot_sync.sync_bindings`): a row the host hands back becomes its typed class with `from_values`, a changed row
is `row._replace(field=...)`. The classes are tuples in wire order, so the stored bytes are exactly as before.
"""

from __future__ import annotations

from typing import Any

from autopilot_sync.bindings.context import ReducerContext
from autopilot_sync.bindings.reducers import StartInfo
from autopilot_sync.contract import stream_chain
from autopilot_sync.contract.canonical import CanonicalJsonError, canonicalize_and_hash
from autopilot_sync.contract.codes import SyncErrorCode
from autopilot_sync.contract.scopes import Scope, scopes_of
from autopilot_sync.module.auth import (
    check_trusted_issuer,
    is_owner,
    nostr_pubkey_of,
    require_scope,
    require_stream,
    require_trusted_issuer,
)
from autopilot_sync.module.config import config_row, current_limits, limits_of, seed_config
from autopilot_sync.module.errors import SyncError
from autopilot_sync.module.floor import raise_floor
from autopilot_sync.module.head_book import FIRST_EPOCH, Head, HeadBook
from autopilot_sync.module.limits import (
    SyncLimits,
    check_event_fields,
    check_field,
    check_payload_depth,
    check_stream_id,
)
from autopilot_sync.module.schema import SYNC_EVENT_INPUT, module
from autopilot_sync.module.visibility import PRESENCE_REALM, admit_member
from autopilot_sync.spacetime import algebraic as at
from autopilot_sync.spacetime.values import Timestamp
from autopilot_sync.sync_bindings import (
    ActiveConnection,
    AppendSyncEventsBatchItem,
    StreamCheckpoint,
    StreamHead,
    SyncEvent,
)


@module.client_connected
def client_connected(ctx: ReducerContext) -> None:
    """Admit readers and publishers only; record presence with the Nostr key the token proves.

    The owner passes without a trusted issuer (its identity already pins its token's issuer) and without scopes
    (SpacetimeDB runs `client_connected` around an HTTP `/call` too), so its `set_trusted_issuer` always gets
    through; without scopes it is no sync client, so it gets no presence.
    """
    scopes = scopes_of(ctx.claims)
    syncs = Scope.SUBSCRIBE.value in scopes or Scope.APPEND.value in scopes
    config = config_row(ctx)
    if is_owner(ctx, config):
        if not syncs:
            return
    else:
        check_trusted_issuer(ctx, config)
    if not syncs:
        raise SyncError(SyncErrorCode.UNAUTHORIZED, "connecting needs scope sync.subscribe or sync.append")
    admit_member(ctx)
    if ctx.connection_id is None:
        return
    pubkey = nostr_pubkey_of(ctx.claims)
    kind = ctx.claims.get("client_kind")
    ctx.db.active_connection.insert(
        ActiveConnection(
            connection_id=ctx.connection_id,
            identity=ctx.sender,
            nostr_pubkey_hex=pubkey.hex if pubkey else "",
            npub=pubkey.npub if pubkey else "",
            client_kind=kind if isinstance(kind, str) else "",
            connected_at=ctx.timestamp,
            last_seen=ctx.timestamp,
            realm=PRESENCE_REALM,
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
        ctx.db.active_connection.update(ActiveConnection.from_values(row)._replace(last_seen=ctx.timestamp))


@module.reducer(("batch", at.array(SYNC_EVENT_INPUT)))
def append_sync_events(ctx: ReducerContext, batch: list[tuple[Any, ...]]) -> None:
    """Append events atomically: hash-checked, idempotent by key, gap-free per stream."""
    config = require_trusted_issuer(ctx)
    require_scope(ctx.claims, Scope.APPEND, "append_sync_events")
    limits = limits_of(config)
    if len(batch) > limits.max_batch_events:
        raise SyncError(
            SyncErrorCode.BATCH_TOO_LARGE, f"{len(batch)} events in one call, limit {limits.max_batch_events}"
        )
    heads = _Heads(ctx)
    for event in batch:  # each a tuple in `AppendSyncEventsBatchItem`'s wire order (the decoded argument)
        _append_one(ctx, heads, limits, event)
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
    config = require_trusted_issuer(ctx)
    require_scope(ctx.claims, Scope.APPEND, "append_sync_event")
    event = AppendSyncEventsBatchItem(
        stream_id=stream_id,
        idempotency_key=idempotency_key,
        kind=kind,
        payload=payload,
        payload_hash=hash_text,
        expected_seq=expected_seq,
        published_at=published_at,
    )
    heads = _Heads(ctx)
    _append_one(ctx, heads, limits_of(config), event)
    heads.write()


class _Heads:
    """Stream heads a call reads and moves, written back once per stream at the end of the call.

    A batch of 100 events on one stream would otherwise rewrite its `stream_head` row 100 times (find, delete,
    insert, index upkeep): measured as the largest single cost of `append_sync_events`. Still one transaction, so
    atomicity and the sequence rule are unchanged. Each head carries its chain value, so every appended event links
    to the one before it (the first event of a new stream to the genesis value of epoch 1). The heads come from the
    table's `HeadBook` (module/head_book.py): kept between calls, found in the table only when the book lacks them.
    """

    def __init__(self, ctx: ReducerContext) -> None:
        self._ctx = ctx
        #: The call's `sync_event` table, looked up once rather than twice per event.
        self.events = ctx.db.sync_event
        #: The table's own row class: a row built with it is stored as it is, not copied into that class again.
        self.event_row = self.events.row
        self._table = ctx.db.stream_head
        self._book = HeadBook.of(self._table)
        #: Streams whose id and claim this call has checked (a batch is mostly one stream: checked once).
        self.admitted: set[str] = set()
        #: stream -> its head as this call found it (None: a new stream): what the write-back keeps of it
        self._found: dict[str, Head | None] = {}
        #: stream -> (head seq, its chain value, the value's 32 bytes — the next link's input, not parsed again;
        #: None until the first link parses it —, the stream's epoch): what the call's next event on the stream
        #: reads, in one lookup
        self.moved: dict[str, tuple[int, str, bytes | None, int]] = {}

    def start(self, stream_id: str) -> tuple[int, str, bytes | None, int]:
        """The stream's head as this call first sees it, in `moved`'s shape (genesis of epoch 1 for a new stream)."""
        head = self._book.read(self._table, stream_id)
        self._found[stream_id] = head
        if head is None:
            genesis = stream_chain.genesis(stream_id, FIRST_EPOCH)
            return 0, genesis, stream_chain.raw(genesis), FIRST_EPOCH
        return head.head_seq, head.head_chain, head.digest, head.epoch

    def advance(self, stream_id: str, seq: int, chain: str, digest: bytes, epoch: int) -> None:
        """Record that `seq`, with chain value `chain` (`digest` its bytes), is now the head of `stream_id` (of
        epoch `epoch`)."""
        self.moved[stream_id] = (seq, chain, digest, epoch)

    def write(self) -> None:
        """Write every moved head once (`HeadBook.write`)."""
        if self.moved:
            self._book.write(self._table, self._ctx.timestamp, self.moved, self._found)


def _append_one(ctx: ReducerContext, heads: _Heads, limits: SyncLimits, event: tuple[Any, ...]) -> None:
    """One event of a call, judged by the limits read once per call (`sync_config` does not change mid-call).

    `event` is an `AppendSyncEventsBatchItem` or the decoded argument tuple in its wire order, unpacked by name in
    that order: making the binding's object first was a copy of every event of a batch (profiled as ~2% of the
    engine's time per event, docs/performance.md "Round 6 — batched2").
    """
    stream_id, idempotency_key, kind, payload, payload_hash, expected_seq, published = event
    if stream_id in heads.admitted:  # its id's bound and the claims' cover were checked on an earlier event
        check_field("idempotency_key", idempotency_key, limits.max_idempotency_key_bytes)
        check_field("kind", kind, limits.max_kind_bytes)
    else:
        check_event_fields(limits, stream_id, idempotency_key, kind)
        require_stream(ctx.claims, stream_id)
        heads.admitted.add(stream_id)
    try:
        canonical, size, computed = canonicalize_and_hash(payload)
    except CanonicalJsonError as exc:
        raise SyncError(SyncErrorCode.INVALID_EVENT, str(exc)) from None
    if size > limits.max_payload_bytes:
        raise SyncError(SyncErrorCode.PAYLOAD_TOO_LARGE, f"payload is {size} bytes, limit {limits.max_payload_bytes}")
    check_payload_depth(canonical, limits.max_payload_depth)
    if computed != payload_hash:
        raise SyncError(
            SyncErrorCode.PAYLOAD_HASH_MISMATCH,
            f"payload_hash {payload_hash} but the canonical payload hashes to {computed}",
        )
    found = heads.events.find(("stream_id", "idempotency_key"), (stream_id, idempotency_key))
    if found is not None:  # keys are scoped per stream: a conflict only ever describes the caller's own stream
        existing = SyncEvent.from_values(found)
        if existing.payload_hash == computed:
            return  # a retry of a committed event: the duplicate is the success
        raise SyncError(
            SyncErrorCode.IDEMPOTENCY_CONFLICT,
            f"key {idempotency_key} was committed on this stream as seq {existing.seq} with {existing.payload_hash}",
        )
    moved = heads.moved.get(stream_id)  # an earlier event of this call moved the head: all of it in one lookup
    if moved is None:
        moved = heads.start(stream_id)
    head_seq = moved[0]
    if expected_seq != head_seq + 1:
        raise SyncError(
            SyncErrorCode.SEQUENCE_CONFLICT,
            f"stream {stream_id} expected_seq={expected_seq} head_seq={head_seq}",
        )
    epoch, previous = moved[3], moved[2]
    if previous is None:  # the head's stored chain value, linked to for the first time (ChainValueError if bad)
        previous = stream_chain.raw(moved[1])
    digest = stream_chain.link_digest(previous, stream_id, epoch, expected_seq, kind, idempotency_key, computed)
    chain = stream_chain.text_of(digest)
    # `SyncEvent`'s fields, positionally in the table's own row class (no keyword parsing, no second copy)
    now = ctx.timestamp
    heads.events.insert(
        heads.event_row(
            stream_id, expected_seq, idempotency_key, kind, canonical, computed, published, now, epoch, chain
        )
    )
    heads.advance(stream_id, expected_seq, chain, digest, epoch)


@module.reducer(("stream_id", at.STRING), ("seq", at.U64))
def ack_checkpoint(ctx: ReducerContext, stream_id: str, seq: int) -> None:
    """Record the last seq the caller applied on a stream (observability of replay lag)."""
    require_trusted_issuer(ctx)
    require_scope(ctx.claims, Scope.CHECKPOINT_WRITE, "ack_checkpoint")
    check_stream_id(current_limits(ctx), stream_id)
    require_stream(ctx.claims, stream_id)
    head = ctx.db.stream_head.find("stream_id", stream_id)
    if head is None:  # a checkpoint row per made-up stream would be kept forever and fanned out to everyone
        raise SyncError(SyncErrorCode.UNKNOWN_STREAM, f"stream {stream_id} does not exist")
    head_seq = StreamHead.from_values(head).head_seq
    if seq > head_seq:
        raise SyncError(SyncErrorCode.CHECKPOINT_BEYOND_HEAD, f"stream {stream_id} seq={seq} head_seq={head_seq}")
    key = f"{ctx.sender.hex}:{stream_id}"
    found = ctx.db.stream_checkpoint.find("checkpoint_key", key)
    checkpoint = StreamCheckpoint(
        checkpoint_key=key, identity=ctx.sender, stream_id=stream_id, seq=seq, updated_at=ctx.timestamp
    )
    if found is None:
        ctx.db.stream_checkpoint.insert(checkpoint)
        return
    recorded = StreamCheckpoint.from_values(found).seq
    if seq < recorded:
        raise SyncError(
            SyncErrorCode.CHECKPOINT_REGRESSION, f"stream {stream_id} seq={seq} is below the recorded {recorded}"
        )
    if seq > recorded:
        ctx.db.stream_checkpoint.update(checkpoint)


@module.reducer(("stream_id", at.STRING), ("retain_from_seq", at.U64))
def trim_stream(ctx: ReducerContext, stream_id: str, retain_from_seq: int) -> None:
    """Retention: delete events below `retain_from_seq` and raise the stream's floor so stale cursors are detectable."""
    require_trusted_issuer(ctx)
    require_scope(ctx.claims, Scope.ADMIN, "trim_stream")
    check_stream_id(current_limits(ctx), stream_id)
    require_stream(ctx.claims, stream_id)
    found = ctx.db.stream_head.find("stream_id", stream_id)
    if found is None:
        raise SyncError(SyncErrorCode.UNKNOWN_STREAM, f"stream {stream_id} has no events")
    head = StreamHead.from_values(found)
    head_seq, floor = head.head_seq, head.retained_from_seq
    if retain_from_seq > head_seq + 1 or retain_from_seq < floor:
        raise SyncError(
            SyncErrorCode.INVALID_TRIM,
            f"stream {stream_id} retain_from_seq={retain_from_seq} must be within {floor}..{head_seq + 1}",
        )
    raise_floor(ctx, head, retain_from_seq)


@module.reducer(("stream_id", at.STRING))
def reset_stream(ctx: ReducerContext, stream_id: str) -> None:
    """Start a stream over: delete its events, reset the head and bump its epoch (clients must rebuild)."""
    require_trusted_issuer(ctx)
    require_scope(ctx.claims, Scope.ADMIN, "reset_stream")
    check_stream_id(current_limits(ctx), stream_id)
    require_stream(ctx.claims, stream_id)
    found = ctx.db.stream_head.find("stream_id", stream_id)
    if found is None:
        raise SyncError(SyncErrorCode.UNKNOWN_STREAM, f"stream {stream_id} has no events")
    for row in ctx.db.sync_event.filter("stream_id", stream_id):
        ctx.db.sync_event.delete(row)
    epoch = StreamHead.from_values(found).epoch + 1
    start = stream_chain.genesis(stream_id, epoch)
    ctx.db.stream_head.update(
        StreamHead(
            stream_id=stream_id,
            head_seq=0,
            retained_from_seq=1,
            epoch=epoch,
            updated_at=ctx.timestamp,
            head_chain=start,
            floor_chain=start,
        )
    )


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
    for head in [StreamHead.from_values(row) for row in ctx.db.stream_head]:
        if head.head_chain == "":
            _chain_existing(ctx, head)
    if info.history_discarded:
        for head in [StreamHead.from_values(row) for row in ctx.db.stream_head]:
            ctx.db.stream_head.update(head._replace(epoch=head.epoch + 1, updated_at=ctx.timestamp))


def _chain_existing(ctx: ReducerContext, head: StreamHead) -> None:
    stream_id, epoch = head.stream_id, head.epoch
    floor_chain = stream_chain.genesis(stream_id, epoch)
    chain = floor_chain
    low, high = (stream_id, head.retained_from_seq), (stream_id, head.head_seq)
    for row in list(ctx.db.sync_event.range(("stream_id", "seq"), low, high)):
        event = SyncEvent.from_values(row)
        chain = stream_chain.link(
            chain, stream_id, epoch, event.seq, event.kind, event.idempotency_key, event.payload_hash
        )
        ctx.db.sync_event.delete(row)
        ctx.db.sync_event.insert(event._replace(epoch=epoch, chain=chain))
    ctx.db.stream_head.update(head._replace(head_chain=chain, floor_chain=floor_chain))
